"""Ask a running deployment one question through the official OpenAI client.

Usage: python scripts/demo_chat.py DEPLOYMENT "question"
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from openai import OpenAI


def main() -> int:
    name, question = sys.argv[1], sys.argv[2]
    rows = json.loads(
        subprocess.run(
            ["llmdeploy", "status", "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    row = next(r for r in rows if r["name"] == name)
    client = OpenAI(base_url=row["url"], api_key=os.environ.get("OPENAI_API_KEY", "none"))
    reply = client.chat.completions.create(
        model=row["model"],
        messages=[{"role": "user", "content": question}],
        max_tokens=60,
        temperature=0.2,
    )
    print(f"Q: {question}")
    print(f"A: {(reply.choices[0].message.content or '').strip()}")
    usage = reply.usage
    if usage:
        print(f"({usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
