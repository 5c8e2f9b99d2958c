"""Issue 17, findings 2 and 9: a model's reply is parsed with bounded work, and an LLM
configuration that cannot work stops at once instead of being retried proposal after proposal.

The first half pins each finding with a regression test (the inputs took seconds to minutes,
or never finished, before the fix; failures were retried and recorded as `no_code`). The
second half states the parser's guarantees as Hypothesis properties over adversarial replies
(unclosed tags, many fences, many edits, prose around code): any reply up to the cap comes
back as a `Parsed` within a time bound, after a bounded number of parses, and any code it
gives parses and defines the entry point. Model calls go to the local OpenAI-compatible
stand-in (tests/llm_server.py) through litellm's real HTTP client.
"""

import ast
import contextlib
import random
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_server import Reply, completion, recorded_server, unauthorized

from sandbox.tasks import load_task
from scientist.proposers import parsing
from scientist.proposers.base import ProposalRequest, ProposerError
from scientist.proposers.llm import API_KEY_VARIABLE, LLMProposer

MODEL = "openai/recorded-model"
ENTRY = "drift"
CAP = parsing.MAX_REPLY_CHARS
# Wall bounds are loose (a shared 2-core CI machine); what they catch took seconds to minutes.
SECONDS = 3.0
MAX_PARSES = parsing.MAX_TRIM_PARSES + 1  # trimming prose, then the rendered module once

MODULE = '''\
import jax.numpy as jnp


def drift(ratio, advantage):
    """A smooth quadratic penalty outside a trust band."""
    excess = jnp.maximum(jnp.abs(ratio - 1.0) - 0.1, 0.0)
    return 0.5 * excess ** 2 * jnp.abs(advantage)
'''
CLIP = "    clipped = jnp.clip(ratio, 0.8, 1.2)"
HYPOTHESIS = settings(deadline=None, derandomize=True, max_examples=60)


@pytest.fixture(scope="module")
def task():
    return load_task("mirror_drift")


@pytest.fixture(scope="module")
def parent(task):
    return task.baseline_source("ppo")


def edit_block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def fill(unit: str, size: int = CAP) -> str:
    """`unit` repeated to exactly `size` characters."""
    return (unit * (size // len(unit) + 1))[:size]


def request(task) -> ProposalRequest:
    return ProposalRequest(task, 0, 1, [], [], [], random.Random(0))


def timed(parse, *args) -> tuple[parsing.Parsed, float]:
    started = time.perf_counter()
    parsed = parse(*args)
    return parsed, time.perf_counter() - started


@contextlib.contextmanager
def counted_parses():
    """The sizes of the sources given to ast.parse while the block runs (the real parse)."""
    sizes, real = [], ast.parse

    def parse(source, *args, **kwargs):
        sizes.append(len(source))
        return real(source, *args, **kwargs)

    ast.parse = parse
    try:
        yield sizes
    finally:
        ast.parse = real


def assert_candidate(parsed: parsing.Parsed) -> None:
    """Code, when there is any, parses and defines the entry point at module level."""
    assert parsed.note
    if parsed.code is not None:
        tree = ast.parse(parsed.code)
        assert any(isinstance(n, ast.FunctionDef) and n.name == ENTRY for n in tree.body)


# --- finding 2: parsing is linear and bounded -------------------------------------------------


def test_unclosed_think_tags_parse_in_linear_time(task):
    # Before: every `<think>` scanned to the end for a closing tag (40 KB took 0.7-2.4 s).
    parsed, seconds = timed(parsing.extract_module, fill("<think>"), task)
    assert seconds < SECONDS and parsed.code is None
    assert parsing.strip_thinking("a<think>b</think>c<think>d") == "ac<think>d"


def test_long_fence_info_string_parses_in_linear_time(task):
    # Before: the fence pattern tried every split of the info string (20 KB took 1.2 s).
    parsed, seconds = timed(parsing.extract_module, "```" + fill("a", CAP - 4) + "`", task)
    assert seconds < SECONDS and parsed.code is None


def test_a_reply_over_the_cap_is_refused_unparsed_and_kept_whole(task, parent):
    huge = fill("words and more words\n", 5_000_000)
    for parse, args in (
        (parsing.extract_module, (huge, task)),
        (parsing.edit_module, (huge, parent, task)),
    ):
        parsed, seconds = timed(parse, *args)
        assert seconds < SECONDS and parsed.code is None
        assert "5,000,000 characters" in parsed.note and f"{CAP:,}" in parsed.note
    # Through the proposer: the note says why, the call record keeps the whole reply.
    reply = MODULE + fill("# padding\n", CAP)
    with recorded_server([completion(reply)]) as server:
        proposer = LLMProposer([MODEL], api_base=server.base_url, api_key="sk-test")
        proposal = proposer.propose(request(task))
    assert proposal.code is None and "are not parsed" in proposal.note
    assert proposal.calls[0].response == reply


def test_edit_blocks_beyond_the_limit_are_refused_not_applied(task, parent):
    # Before: 8,000 edits that each grew the module took 9.4 s, applied one by one.
    growing = "".join(
        edit_block(CLIP if i == 0 else f"    a{i} = 0", f"    a{i + 1} = 0\n    a{i + 1} = 0")
        for i in range(parsing.MAX_EDIT_BLOCKS + 1)
    )
    parsed, seconds = timed(parsing.edit_module, growing, parent, task)
    assert seconds < SECONDS and parsed.code is None
    assert f"more than {parsing.MAX_EDIT_BLOCKS} edit blocks" in parsed.note


def test_a_long_search_section_is_found_in_linear_time(task, parent):
    # Before: each start in the module compared a slice of the SEARCH's length (quadratic).
    padded = parent + "\n" + "x = 0\n" * 20_000 + "y = 1\n"
    reply = edit_block("x = 0\n" * 10_000 + "y = 1", "y = 2")
    parsed, seconds = timed(parsing.edit_module, reply, padded, task)
    assert seconds < SECONDS and parsed.code is not None
    assert parsed.code.count("x = 0") == 10_000 and "y = 2" in parsed.code


def test_an_unfenced_reply_is_parsed_a_bounded_number_of_times(task):
    # Before: 1 MB of Python without the function was parsed 20 times (16.7 s).
    statements = "import os\n" + "".join(f"x_{i} = {i}\n" for i in range(CAP // 20))
    in_a_string = 'NOTE = """\ndef drift(ratio, advantage):\n"""\n'  # mentioned, not defined
    prose = "\n".join(["Hope this helps.", "Let me know how it goes!"] * 10)
    for reply, wanted in (
        (statements, None),
        (statements + in_a_string, None),
        (statements + MODULE + prose, task.render(source=statements + MODULE)),
    ):
        with counted_parses() as sizes:
            parsed, seconds = timed(parsing.extract_module, reply, task)
        assert parsed.code == wanted, parsed.note
        assert len(sizes) <= MAX_PARSES and seconds < SECONDS


def test_a_large_shift_of_indentation_is_not_applied(task, parent):
    # A loose match shifted by a page of spaces would multiply the replacement's size.
    deep = " " * 50_000 + "z = 1"
    reply = edit_block(CLIP, deep) + edit_block("z = 1", "x = 1\n" * 20_000)
    parsed, seconds = timed(parsing.edit_module, reply, parent, task)
    assert (
        seconds < SECONDS and parsed.code is None and "edit block 2 does not match" in parsed.note
    )


# --- finding 9: configuration errors stop at once ------------------------------------------


def keyless_proposer(api_base: str, sleeps: list) -> LLMProposer:
    return LLMProposer([MODEL], api_base=api_base, max_retries=3, sleep=sleeps.append)


@pytest.fixture
def no_key(monkeypatch):
    """An environment without any provider's key, as on a machine with a local server."""
    for name in ("OPENAI_API_KEY", API_KEY_VARIABLE):
        monkeypatch.delenv(name, raising=False)


def test_a_local_server_is_reached_without_a_key(task, no_key):
    # Before: litellm refused to call without a key ("Missing credentials"), 5 attempts each.
    sleeps = []
    with recorded_server([completion(f"```python\n{MODULE}```")]) as server:
        proposal = keyless_proposer(server.base_url, sleeps).propose(request(task))
    assert proposal.code is not None and len(server.requests) == 1 and sleeps == []


def test_a_missing_key_stops_at_once_saying_what_to_set(task, no_key):
    sleeps = []
    with pytest.raises(ProposerError) as raised:
        keyless_proposer("https://models.example.com/v1", sleeps).propose(request(task))
    message = str(raised.value)
    assert sleeps == [] and "\n" not in message
    assert re.search(rf"no API key .*; set {API_KEY_VARIABLE} or OPENAI_API_KEY$", message)


def refusal(status: int, message: str) -> Reply:
    return Reply(
        status=status, body={"error": {"message": message, "type": "invalid_request_error"}}
    )


@pytest.mark.parametrize(
    "reply, hint",
    [
        (unauthorized(), f"set {API_KEY_VARIABLE}"),
        (refusal(403, "this key may not use the model"), "another --model"),
        (refusal(404, "model 'recorded-model' not found"), "check --model and --api-base"),
        (refusal(400, "unknown parameter"), "check --model and --api-base"),
    ],
)
def test_a_permanent_error_stops_without_retries(task, no_key, reply, hint):
    sleeps = []
    with recorded_server([reply, completion(MODULE)]) as server:
        with pytest.raises(ProposerError) as raised:
            keyless_proposer(server.base_url, sleeps).propose(request(task))
    assert len(server.requests) == 1 and sleeps == []
    message = str(raised.value)
    assert message.startswith(MODEL) and hint in message and "\n" not in message


# --- properties ------------------------------------------------------------------------------

FRAGMENTS = (
    "<think>",
    "<THINKING>",
    "</think>",
    "</thinking>",
    "```",
    "```python",
    "~~~py",
    "`",
    "<<<<<<< SEARCH",
    "=======",
    ">>>>>>> REPLACE",
    "def drift(ratio, advantage):",
    "    return ratio",
    CLIP,
    "import jax.numpy as jnp",
    "Hope this helps!",
    "(",
    '"""',
    "\\",
    "    ",
    "\t",
    "\r",
    "\x0c",
    "\u2028",
    "\x00",
    MODULE,
)
REPEATS = st.one_of(st.integers(1, 8), st.sampled_from([100, 1_000, 10_000, 100_000]))
PIECES = st.tuples(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), REPEATS, st.booleans()
)


@st.composite
def replies(draw) -> str:
    """Up to CAP characters of repeated fragments: tags, fences and edit markers, some of them
    unclosed, code, prose and odd characters."""
    pieces = draw(st.lists(PIECES, max_size=10))
    return "".join((text + "\n" * newline) * count for text, count, newline in pieces)[:CAP]


@HYPOTHESIS
@given(reply=replies())
def test_any_reply_up_to_the_cap_parses_quickly_and_soundly(task, parent, reply):
    for parse, args in (
        (parsing.extract_module, (reply, task)),
        (parsing.edit_module, (reply, parent, task)),
    ):
        with counted_parses() as sizes:
            parsed, seconds = timed(parse, *args)
        assert seconds < SECONDS and len(sizes) <= MAX_PARSES
        assert_candidate(parsed)


EDIT_REPEATS = st.one_of(st.integers(1, 3), st.sampled_from([100, 1_000]))


@st.composite
def edit_chains(draw) -> str:
    """Up to twice MAX_EDIT_BLOCKS edits within CAP, each replacing the line the previous one
    wrote with one or many lines, quoted at some indentation: exact, loose, or shifted too
    far to apply."""
    blocks, previous, size = [], CLIP.strip(), 0
    for number in range(draw(st.integers(1, 2 * parsing.MAX_EDIT_BLOCKS))):
        indent, line = " " * draw(st.sampled_from([0, 4, 8, 40])), f"a{number} = 0"
        block = edit_block(indent + previous, "\n".join([indent + line] * draw(EDIT_REPEATS)))
        if size + len(block) > CAP:
            break
        blocks.append(block)
        size, previous = size + len(block), line
    return "".join(blocks)


@HYPOTHESIS
@given(reply=edit_chains())
def test_edit_chains_are_bounded_and_sound(task, parent, reply):
    parsed, seconds = timed(parsing.edit_module, reply, parent, task)
    assert seconds < SECONDS
    assert_candidate(parsed)
    if reply.count("<<<<<<< SEARCH") > parsing.MAX_EDIT_BLOCKS:
        assert parsed.code is None and "edit blocks" in parsed.note


THINK_TEXT = st.lists(
    st.sampled_from(["<think>", "</think>", "<Thinking>", "</THINKING>", "x", "\n"])
).map("".join)


@settings(deadline=None, derandomize=True, max_examples=100)
@given(text=THINK_TEXT)
def test_strip_thinking_matches_the_regular_expression(text):
    # The old one-regex definition, quadratic on unclosed tags, is the oracle on small inputs.
    oracle = re.sub(r"<think(?:ing)?>.*?</think(?:ing)?>", "", text, flags=re.DOTALL | re.I)
    assert parsing.strip_thinking(text) == oracle


LINES = st.lists(st.sampled_from(["a", " a", "a ", "b", ""]), max_size=12)


@settings(deadline=None, derandomize=True, max_examples=100)
@given(lines=LINES, search=LINES.filter(bool))
def test_finding_a_run_of_lines_matches_comparing_slices(lines, search):
    for key in (str.rstrip, str.strip):
        wanted = [key(line) for line in search]
        starts = range(len(lines) - len(search) + 1)
        oracle = next(
            (s for s in starts if [key(x) for x in lines[s : s + len(search)]] == wanted), None
        )
        assert parsing._find(lines, search, key) == oracle


WORDS = st.sampled_from(["Hope", "this", "helps", "Let", "me", "know", "don't", "it", "works!"])
PROSE_LINE = st.lists(WORDS, min_size=2, max_size=6).map(" ".join)


@HYPOTHESIS
@given(prose=st.lists(PROSE_LINE, min_size=1, max_size=parsing.MAX_SIGN_OFF_LINES))
def test_a_module_followed_by_prose_is_recovered(task, prose):
    parsed = parsing.extract_module(MODULE + "\n" + "\n".join(prose), task)
    assert parsed.code == task.render(source=MODULE), parsed.note
