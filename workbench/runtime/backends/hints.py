"""How to add the optional llama.cpp backend (imported by pages without importing llama.cpp)."""

INSTALL_HINT = ('CMAKE_ARGS="-DGGML_NATIVE=ON" .venv/bin/pip install "llama-cpp-python==0.3.36" '
                "(or `pip install .[llamacpp]`; it compiles llama.cpp: an hour or more on 2 cores)")
