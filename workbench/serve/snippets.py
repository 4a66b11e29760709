"""Copy-paste client code for a running server: curl, the origin's ``requests`` call, and the
``openai`` client. Pure strings; the key appears only if the caller passes it (else a placeholder
that reads it from ``$WORKBENCH_API_KEY``)."""
from __future__ import annotations

KEY_PLACEHOLDER = "$WORKBENCH_API_KEY"


def curl(base: str, model: str, key: str | None = None) -> str:
    k = key or KEY_PLACEHOLDER
    return (
        f'curl -s "{base}/api/generate?model={model}" \\\n'
        f'  -H "Authorization: Bearer {k}" \\\n'
        '  --data-urlencode "text=The capital of France is"\n\n'
        f'curl -sN {base}/v1/chat/completions \\\n'
        f'  -H "Authorization: Bearer {k}" -H "Content-Type: application/json" \\\n'
        f'  -d \'{{"model": "{model}", "stream": true, "max_tokens": 64,\n'
        '       "messages": [{"role": "user", "content": "Tell me a joke"}]}\''
    )


def python_requests(base: str, model: str, key: str | None = None) -> str:
    key_line = f'api_key = "{key}"' if key else 'api_key = os.environ["WORKBENCH_API_KEY"]'
    return (
        "import os\n\nimport requests\n\n"
        f'BASE = "{base}"\n{key_line}\nmodel_name = "{model}"\ntext = "The capital of France is"\n\n'
        'print(requests.post(f"{BASE}/api/generate?model={model_name}",\n'
        '                    headers={"Authorization": f"Bearer {api_key}"},\n'
        '                    data={"text": text}).json()["generated_text"])'
    )


def python_openai(base: str, model: str, key: str | None = None) -> str:
    key_arg = f'"{key}"' if key else 'os.environ["WORKBENCH_API_KEY"]'
    return (
        "import os\n\nfrom openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base}/v1", api_key={key_arg})\n'
        f'stream = client.chat.completions.create(\n    model="{model}",\n'
        '    messages=[{"role": "user", "content": "Tell me a joke"}],\n'
        "    max_tokens=64, stream=True,\n)\n"
        'for chunk in stream:\n    print(chunk.choices[0].delta.content or "", end="")\n\n'
        f'r = client.completions.create(model="{model}", prompt="The capital of France is",\n'
        "                               max_tokens=8, temperature=0, logprobs=5)\n"
        "print(r.choices[0].text, r.choices[0].logprobs.top_logprobs[0])"
    )
