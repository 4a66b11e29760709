"""How to add the optional llama.cpp backend (imported by pages without importing llama.cpp)."""

INSTALL_HINT = ('CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF '
                '-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" .venv/bin/pip install "llama-cpp-python==0.3.36" '
                "(or `pip install .[llamacpp]`; it compiles llama.cpp: 5-11 minutes on 2 cores with those options; "
                "on a CPU with AMX see docs/latency.md)")
