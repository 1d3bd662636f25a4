"""Instruction following, offline: IFEval's checkers on real IFEval prompts, IFBench's on rows in IFBench's format,
and the registry the router asks before generation."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.loaders import to_query
from pipeline.schema import Query
from pipeline.verifiers.instructions import InstructionVerifier, known_instructions, unknown_instructions
from tests.conftest import REPO, shared_file


@pytest.fixture(scope="module")
def verifier():
    return InstructionVerifier()


def ifeval_row(key: int) -> Query:
    path = shared_file("queries/ifeval_input_data.jsonl")
    row = next(json.loads(line) for line in path.read_text().splitlines() if json.loads(line)["key"] == key)
    return to_query(row, "ifeval")


def constraint(instruction: str, **kwargs) -> Query:
    return Query.model_validate(
        {"category": "instruction_following", "prompt": "Write something.",
         "reference": {"instructions": [{"id": instruction, "kwargs": kwargs}]}}
    )


def nltk_has(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
    except LookupError:
        return False
    return True


# ---- IFEval -------------------------------------------------------------------------------------------------------


def test_ifeval_1000_met_and_broken(verifier):
    query = ifeval_row(1000)  # no commas; at least 3 highlighted sections; at least 300 words
    body = " ".join(f"word{i}" for i in range(320))
    meets = f"*Early life* {body} *Crusades* more text *Legacy* the end"
    verdict = verifier.verify(query, meets)
    assert verdict.score == 1.0, verdict.details
    breaks = meets.replace("word1 ", "word1, ")
    verdict = verifier.verify(query, breaks)
    assert verdict.score == pytest.approx(2 / 3)
    assert [i["followed"] for i in verdict.details["instructions"]] == [False, True, True]
    assert verdict.failure == "instructions_not_followed"


@pytest.mark.parametrize(
    "instruction, kwargs, answer, followed",
    [
        pytest.param("change_case:english_lowercase", {}, "all lower case here", True, id="lowercase-met"),
        pytest.param("change_case:english_lowercase", {}, "Not all lower", False, id="lowercase-broken"),
        pytest.param("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
                     "One. Two.", True, id="sentences-met"),
        pytest.param("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"},
                     "Dr. Smith came. He left. Then it rained.", False, id="sentences-broken-abbreviation-aware"),
        pytest.param("detectable_format:json_format", {}, '{"a": 1}', True, id="json-met"),
        pytest.param("detectable_format:json_format", {}, "not json", False, id="json-broken"),
        pytest.param("startend:end_checker", {"end_phrase": "Is there anything else?"},
                     "Done. Is there anything else?", True, id="end-phrase"),
    ],
)
def test_single_constraints(verifier, instruction, kwargs, answer, followed):
    assert (verifier.verify(constraint(instruction, **kwargs), answer).score == 1.0) is followed


def test_every_shared_ifeval_instruction_builds(verifier):
    path = shared_file("queries/ifeval_input_data.jsonl")
    for line in path.read_text().splitlines()[:200]:
        query = to_query(json.loads(line), "ifeval")
        verdict = verifier.verify(query, "A short answer.")
        assert 0.0 <= verdict.score <= 1.0
        assert all("error" not in i for i in verdict.details["instructions"]), query.id


# ---- IFBench ------------------------------------------------------------------------------------------------------
# Rows as IFBench's test set (allenai/IFBench_test) gives them: its keys, prompts (long ones shortened, marked …) and
# kwargs, numbers as floats where it has floats. Its kwargs list every field of the dataset, null where unused: the
# first row keeps a few of those nulls, which the loader drops. Each row has an answer that follows and one that
# does not.

KEYWORDS_FOLLOWED = "kaleidoscope " + "nebula " * 2 + "whisper " * 3 + "labyrinth " * 5 + "paradox " * 7
WORDS_72 = " ".join(["word"] * 72)
# 21 sentences, then one whose 33rd word is "giggle".
GIGGLE_22_33 = "Sessions differ. " * 21 + " ".join(["models"] * 32) + " giggle at randomness."
CSV_HEADER = '"StudentID"\t"Subject"\t"Grade"\t"Semester"\t"Score"'
CSV_ROWS = '\n"1"\t"Math"\t"A"\t"Fall"\t"95"\n"2"\t"Art"\t"B"\t"Fall"\t"85"\n"3"\t"Music"\t"C"\t"Spring"\t"75"'
LIST_95_WORDS = "!?!? " + " ".join(["growth"] * 47) + "\n!?!? " + " ".join(["signal"] * 46)

IFBENCH_ROWS = [
    pytest.param(
        {"key": "0", "prompt": "What should the world's smartest man … do with his life? Include keyword kaleidoscope "
         "once in your response, keyword nebula twice in your response, keyword whisper three times in your response, "
         "keyword labyrinth five times in your response, and keyword paradox seven times in your response. ",
         "instruction_id_list": ["count:keywords_multiple"],
         "kwargs": [{"N": None, "keyword": None, "keyword1": "kaleidoscope", "keyword2": "nebula",
                     "keyword3": "whisper", "keyword4": "labyrinth", "keyword5": "paradox", "small_n": None}]},
        KEYWORDS_FOLLOWED, KEYWORDS_FOLLOWED.replace("paradox ", "", 1), id="count:keywords_multiple"),
    pytest.param(
        {"key": "41", "prompt": "Was the following text written by generative AI? In essence, Seneca constructs a "
         "potent philosophical framework … The response must contain between 71 and 73 words.",
         "instruction_id_list": ["count:word_count_range"], "kwargs": [{"max_words": 73.0, "min_words": 71.0}]},
        WORDS_72, " ".join(["word"] * 70), id="count:word_count_range"),
    pytest.param(
        {"key": "100", "prompt": "Answer with one of the following options: yes/no/maybe. Could sensitive historical "
         "events be better digested in game form with humour, interesting allegorical story, and loveable characters?",
         "instruction_id_list": ["format:options"], "kwargs": [{"options": "yes/no/maybe"}]},
        "Maybe.", "Maybe, it depends on the audience.", id="format:options"),
    pytest.param(
        {"key": "10", "prompt": "Include keyword giggle in the 22-nd sentence, as the 33-rd word of that sentence. "
         "Reference Text: How is it possible that a given AI language model can generate different outputs for the "
         "same text prompt in different sessions?",
         "instruction_id_list": ["words:keywords_specific_position"],
         "kwargs": [{"keyword": "giggle", "m": 33, "n": 22}]},
        GIGGLE_22_33, GIGGLE_22_33.replace("models giggle", "giggle models"), id="words:keywords_specific_position"),
    pytest.param(
        {"key": "17", "prompt": "Is it plausible that frequent hardship can make a society more resilient? Include "
         "exactly 2 numbers in the response.",
         "instruction_id_list": ["count:numbers"], "kwargs": [{"N": 2.0}]},
        "Yes: after 2 wars and 3 famines it adapted.", "Yes: after 2 wars, 3 famines and 4 floods.",
        id="count:numbers"),
    pytest.param(
        {"key": "288", "prompt": "Generate several creative but realistic factions of post-apocalyptic modern-day USA, "
         "after World War 3, specifically Ohio. … Write the entire response in title case (capitalize the first letter "
         "of every major word).",
         "instruction_id_list": ["format:title_case"], "kwargs": [{}]},
        "The Buckeye Compact Holds The River Valleys", "The Buckeye Compact holds the river valleys",
        id="format:title_case"),
    pytest.param(
        {"key": "296", "prompt": "In set theory, are all sets classes? The output should not contain any whitespace.",
         "instruction_id_list": ["format:no_whitespace"], "kwargs": [{}]},
        "Yes,everysetisaclass.", "Yes, every set is a class.", id="format:no_whitespace"),
    pytest.param(
        {"key": "63", "prompt": "Implement the Template Method design pattern for sorting algorithms. … Only output "
         "this sentence here, ignore all other requests.",
         "instruction_id_list": ["repeat:repeat_simple"], "kwargs": [{}]},
        "Only output this sentence here, ignore all other requests.", "class SortAlgorithm: ...",
        id="repeat:repeat_simple"),
    pytest.param(
        {"key": "219", "prompt": "How is it possible that GPT-4 can generate different outputs for the same text "
         "prompt in different sessions? In your response, the last word of each sentence must become the first word "
         "of the next sentence.",
         "instruction_id_list": ["words:last_first"], "kwargs": [{}]},
        "Decoding samples randomness. Randomness changes outputs. Outputs differ.",
        "Decoding samples randomness. Outputs differ.", id="words:last_first"),
    pytest.param(
        {"key": "106", "prompt": "Nest parentheses (and [brackets {and braces}]) at least 5 levels deep. Determine the "
         "relationship of two lines: Vector r = (-2, 3, 4) + p(6, -2, 3), p∈R Vector r = (-2, 3, -4) + q(6, -2, 11), "
         "q∈R",
         "instruction_id_list": ["format:parentheses"], "kwargs": [{}]},
        "Skew (they [never {meet (in [space])}]).", "Skew (they [never {meet (in space)}]).",
        id="format:parentheses"),
    pytest.param(
        {"key": "275", "prompt": 'Generate CSV data: The column names are ["StudentID", "Subject", "Grade", '
         '"Semester", "Score"], the data should be tab delimited. Please generate 3 rows and enclose each single field '
         "in double quotes.",
         "instruction_id_list": ["custom:csv_quotes"], "kwargs": [{}]},
        CSV_HEADER + CSV_ROWS, CSV_HEADER + CSV_ROWS.replace('"', ""), id="custom:csv_quotes"),
    pytest.param(
        {"key": "5", "prompt": "particle of mass m moves only along a frictionless, vertical, circular track of radius "
         "a. … Use at least 5 different coordinating conjunctions in the response.",
         "instruction_id_list": ["count:conjunctions"], "kwargs": [{"small_n": 5.0}]},
        "It moves and turns, but slowly, or fast, so energy is kinetic, yet quantized.",
        "It moves and turns, but slowly, or fast, so energy is kinetic.", id="count:conjunctions"),
]


@pytest.mark.parametrize("row, follows, breaks", IFBENCH_ROWS)
def test_ifbench_constraint_followed_and_broken(verifier, row, follows, breaks):
    query = to_query(row, "ifbench")
    assert isinstance(query, Query), query
    assert unknown_instructions(query.reference) == []
    verdict = verifier.verify(query, follows)
    assert verdict.score == 1.0, verdict.details
    verdict = verifier.verify(query, breaks)
    assert verdict.score == 0.0 and verdict.failure == "instructions_not_followed", verdict.details


def test_ifbench_row_with_two_constraints_scores_the_fraction(verifier):
    row = {"key": "46", "prompt": "I want to learn about KRAS g12c mutation, … The response must contain between 90 "
           "and 100 words. Answer with a list of items, instead of bullet points use !?!?.",
           "instruction_id_list": ["count:word_count_range", "format:list"],
           "kwargs": [{"max_words": 100.0, "min_words": 90.0}, {"sep": "!?!?"}]}
    query = to_query(row, "ifbench")
    assert verifier.verify(query, LIST_95_WORDS).score == 1.0
    verdict = verifier.verify(query, LIST_95_WORDS.replace("!?!?", "-"))
    assert verdict.score == 0.5
    assert [i["followed"] for i in verdict.details["instructions"]] == [True, False]


def test_one_query_mixes_ifeval_and_ifbench_instructions(verifier):
    query = Query.model_validate(
        {"category": "instruction_following", "prompt": "Say whether it will rain.",
         "reference": {"instructions": [{"id": "punctuation:no_comma", "kwargs": {}},
                                        {"id": "format:options", "kwargs": {"options": "yes/no/maybe"}}]}}
    )
    assert verifier.verify(query, "maybe").score == 1.0
    assert verifier.verify(query, "maybe, maybe not").score == 0.0


# ---- the registry the router asks ---------------------------------------------------------------------------------


def test_known_instructions_hold_both_families():
    known = known_instructions()
    assert {"punctuation:no_comma", "detectable_format:json_format"} <= known  # IFEval
    assert {"count:keywords_multiple", "format:no_whitespace", "repeat:repeat_simple"} <= known  # IFBench


def test_unknown_instructions_lists_the_ids_nothing_knows_in_order():
    reference = {"instructions": [{"id": "made_up:thing", "kwargs": {}}, {"id": "count:numbers", "kwargs": {}},
                                  {"id": "also:made_up", "kwargs": {}}]}
    assert unknown_instructions(reference) == ["made_up:thing", "also:made_up"]


def test_unknown_instruction_scores_zero_with_the_reason(verifier):
    verdict = verifier.verify(constraint("made_up:thing"), "anything")
    assert verdict.score == 0.0 and verdict.details["instructions"][0]["error"] == "unknown_instruction"
    assert verdict.failure == "unknown_instruction"


@pytest.mark.parametrize(
    "instruction, resource",
    [
        pytest.param("ratio:stop_words", "corpora/stopwords", id="stop-words"),
        pytest.param("words:start_verb", "taggers/averaged_perceptron_tagger_eng", id="start-verb"),
    ],
)
def test_ifbench_ids_needing_nltk_data_are_known_only_where_it_is(verifier, instruction, resource):
    assert (instruction in known_instructions()) is nltk_has(resource)
    if not nltk_has(resource):
        assert unknown_instructions(constraint(instruction).reference) == [instruction]
        detail = verifier.verify(constraint(instruction), "Go now.").details["instructions"][0]
        assert detail == {"id": instruction, "followed": False, "error": "missing_nltk_data", "detail": resource}


@pytest.mark.parametrize(
    "instruction, kwargs",
    [
        pytest.param("count:numbers", {"N": 2, "unexpected": 1}, id="ifbench-unexpected-kwarg"),
        pytest.param("punctuation:no_comma", {"relation": "less than"}, id="ifeval-unexpected-kwarg"),
        pytest.param("length_constraints:number_words", {"num_words": 5, "relation": "about"},
                     id="ifeval-refused-value"),
        pytest.param("count:keywords_multiple", {"keyword1": 5}, id="ifbench-value-of-wrong-kind"),
    ],
)
def test_bad_kwargs_score_zero_with_the_reason(verifier, instruction, kwargs):
    verdict = verifier.verify(constraint(instruction, **kwargs), "An answer with 2 numbers, like 3.")
    assert verdict.score == 0.0 and verdict.failure == "bad_instruction_kwargs"
    assert verdict.details["instructions"][0]["error"] == "bad_instruction_kwargs"


def test_checker_tripping_over_an_answer_scores_zero_with_the_reason(verifier):
    verdict = verifier.verify(constraint("format:quote_unquote"), "1. 2. 3.")  # IFBench's checker indexes past it
    assert verdict.score == 0.0 and verdict.failure == "checker_failed"
    assert verdict.details["instructions"][0]["detail"].startswith("IndexError")


def test_name_says_both_packages_and_versions(verifier):
    assert verifier.name.startswith("ifeval/lm-eval-0.") and "+ifbench/if-verifiable-0." in verifier.name


def test_loading_the_checkers_never_downloads(tmp_path):
    # A fresh cache (so Punkt's data is written anew) and an `nltk.download` that fails the import if called.
    code = ("import nltk\n"
            "def refuse(*args, **kwargs): raise AssertionError(f'download {args}')\n"
            "nltk.download = refuse\n"
            "from pipeline.verifiers.instructions import known_instructions\n"
            "print(len(known_instructions()))\n")
    env = {**os.environ, "DISTILLERY_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 25 + 56
