"""`python -m rung.cli.llama_server ARGS`: llama-cpp-python's OpenAI-compatible server (`python -m
llama_cpp.server ARGS`, the same arguments) with llama.cpp's CPU weight repacking off, which `rung serve
--engine llama.cpp` runs: with repacking on, llama-cpp-python 0.3.36 segfaults on its first request for Q4_1
and Q8_0 files on AVX-512/AMX CPUs (core/llama_chat.py repacking_off)."""

from __future__ import annotations

import runpy


def main() -> None:
    from rung.core.llama_chat import repacking_off

    repacking_off()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
