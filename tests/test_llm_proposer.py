"""The llm proposer, end to end through litellm's real HTTP path.

A paid model API cannot run in CI (no key, no network, no budget), so these tests point
litellm at a local OpenAI-compatible stand-in (tests/llm_server.py) that returns recorded
responses: valid completions, prose without code, bad diffs, delays past the client timeout,
429s with Retry-After and 500s. Everything between LLMProposer and the socket is the real
code: prompt rendering, litellm's request building and error mapping, our retries, token and
cost accounting, and the parsing of the reply into a candidate module.

The second half unit-tests parsing.py (code extraction and SEARCH/REPLACE edits) directly.
"""

import ast
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from llm_server import (
    Reply,
    bad_diff,
    completion,
    delayed,
    prose_only,
    rate_limited,
    recorded_server,
    server_error,
    unauthorized,
)

from sandbox.tasks import load_task
from scientist.proposers import parsing, prompting
from scientist.proposers.base import ParentView, ProposalRequest, ProposerError
from scientist.proposers.llm import LLMProposer

API_KEY = "sk-test-not-real"
MODEL = "openai/recorded-model"
REPO = Path(__file__).resolve().parents[1]

NEW_DRIFT = '''\
import jax.numpy as jnp


def drift(ratio, advantage):
    """A smooth quadratic penalty outside a trust band."""
    excess = jnp.maximum(jnp.abs(ratio - 1.0) - 0.1, 0.0)
    return 0.5 * excess ** 2 * jnp.abs(advantage)
'''

FULL_REPLY = f"The idea: a smooth penalty outside a trust band.\n\n```python\n{NEW_DRIFT}```\n"

DIFF_REPLY = """Tighten the clip range.

<<<<<<< SEARCH
    clipped = jnp.clip(ratio, 0.8, 1.2)
=======
    clipped = jnp.clip(ratio, 0.9, 1.1)
>>>>>>> REPLACE
"""

CLIP = "    clipped = jnp.clip(ratio, 0.8, 1.2)"
DEF = "def drift(ratio, advantage):"


def edit_block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


FAILURE_ERROR = "drift check failed: negative drift -0.25 at ratio=0.5, advantage=1.0"


@pytest.fixture(scope="module")
def task():
    return load_task("mirror_drift")


@pytest.fixture(scope="module")
def parents(task):
    return [
        ParentView(
            1, task.baseline_source("ppo"), "ok", 1.0, "baseline", "Breakout-MinAtar: 1.000"
        ),
        ParentView(
            2, task.baseline_source("dpo"), "ok", 1.07, "baseline", "Breakout-MinAtar: 1.070"
        ),
    ]


@pytest.fixture(scope="module")
def failure():
    code = (
        "import jax.numpy as jnp\n\n\n"
        "def drift(ratio, advantage):\n    return (ratio - 1.0) * advantage\n"
    )
    return ParentView(9, code, "rejected", None, "llm", error=FAILURE_ERROR)


def make_request(task, parents=(), failures=(), inspirations=(), seed=0):
    return ProposalRequest(
        task=task,
        island=0,
        generation=3,
        parents=list(parents),
        inspirations=list(inspirations),
        failures=list(failures),
        rng=random.Random(seed),
    )


def make_proposer(server, operator=None, models=(MODEL,), sleeps=None, **kwargs):
    options = dict(
        api_base=server.base_url,
        api_key=API_KEY,
        timeout=5.0,
        max_retries=3,
        backoff_seconds=0.01,
        sleep=(sleeps.append if sleeps is not None else lambda seconds: None),
    )
    if operator:
        options["operator_weights"] = {operator: 1.0}
    options.update(kwargs)
    return LLMProposer(list(models), **options)


def assert_candidate(code: str) -> None:
    tree = ast.parse(code)
    assert any(isinstance(node, ast.FunctionDef) and node.name == "drift" for node in tree.body)


def assert_no_key_in_bodies(server) -> None:
    for request in server.requests:
        assert API_KEY not in json.dumps(request.body)
        assert API_KEY not in request.prompt_text


# --- through the server ------------------------------------------------------------------


def test_rewrite_gives_a_rendered_module(task, parents):
    with recorded_server(
        [completion(FULL_REPLY, prompt_tokens=321, completion_tokens=77)]
    ) as server:
        inspiration = ParentView(5, NEW_DRIFT, "ok", 1.2, "llm", "")
        proposal = make_proposer(server, "rewrite").propose(
            make_request(task, parents, inspirations=[parents[0], inspiration])
        )
    assert proposal.code == task.render(source=NEW_DRIFT)
    assert_candidate(proposal.code)
    assert proposal.operator == "rewrite" and proposal.model == MODEL
    assert proposal.parent_ids == [
        1,
        5,
    ]  # the primary parent, then the inspiration shown (not parent 1 twice)
    (call,) = proposal.calls
    assert (call.prompt_tokens, call.completion_tokens, call.attempts, call.error) == (
        321,
        77,
        1,
        None,
    )
    assert call.response == FULL_REPLY and call.messages[0]["role"] == "system"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions" and request.body["model"] == "recorded-model"
    assert request.body["max_tokens"] == 4096 and request.body["temperature"] == 0.8
    assert (
        request.headers.get("Authorization") == f"Bearer {API_KEY}"
    )  # the key went where it belongs
    assert task.baseline_source("ppo").strip() in request.prompt_text
    assert "def drift(ratio, advantage)" in request.messages[0]["content"]
    assert "jax.numpy" in request.messages[0]["content"]  # the allowed imports
    assert task.description in request.messages[0]["content"]  # the validity conditions
    assert_no_key_in_bodies(server)


def test_rewrite_without_parents_uses_the_task_alone(task):
    with recorded_server([completion(FULL_REPLY)]) as server:
        proposal = make_proposer(server).propose(make_request(task))
    assert proposal.operator == "rewrite" and proposal.parent_ids == []
    assert_candidate(proposal.code)
    assert "Parent" not in server.requests[0].prompt_text


def test_diff_is_applied_to_the_parent(task, parents):
    with recorded_server([completion(DIFF_REPLY)]) as server:
        proposal = make_proposer(server, "diff").propose(make_request(task, parents))
    assert proposal.operator == "diff" and proposal.parent_ids == [1]
    assert "jnp.clip(ratio, 0.9, 1.1)" in proposal.code and "0.8, 1.2" not in proposal.code
    assert proposal.code == task.render(source=parents[0].code.replace("0.8, 1.2", "0.9, 1.1"))
    assert "1 edit block(s) applied" in proposal.note
    assert "<<<<<<< SEARCH" in server.requests[0].prompt_text


def test_bad_diff_gives_no_code_and_says_why(task, parents):
    with recorded_server([bad_diff()]) as server:
        proposal = make_proposer(server, "diff").propose(make_request(task, parents))
    assert proposal.code is None and "does not match the parent" in proposal.note
    assert proposal.calls[0].error is None and proposal.calls[0].completion_tokens == 80


def test_crossover_prompt_shows_both_parents(task, parents):
    with recorded_server([completion(FULL_REPLY)]) as server:
        proposal = make_proposer(server, "crossover").propose(make_request(task, parents))
    assert proposal.operator == "crossover" and proposal.parent_ids == [1, 2]
    assert_candidate(proposal.code)
    prompt = server.requests[0].prompt_text
    assert parents[0].code.strip() in prompt and parents[1].code.strip() in prompt
    assert "fitness 1.070" in prompt and "Breakout-MinAtar: 1.070" in prompt


def test_repair_prompt_shows_the_failure_and_its_error(task, parents, failure):
    with recorded_server([completion(FULL_REPLY)]) as server:
        proposal = make_proposer(server, "repair").propose(
            make_request(task, parents, failures=[failure])
        )
    assert proposal.operator == "repair" and proposal.parent_ids == [9]
    assert_candidate(proposal.code)
    prompt = server.requests[0].prompt_text
    assert FAILURE_ERROR in prompt and failure.code.strip() in prompt


def test_reply_without_code_is_recorded_with_a_note(task, parents):
    with recorded_server([prose_only()]) as server:
        proposal = make_proposer(server, "rewrite").propose(make_request(task, parents))
    assert proposal.code is None and "no code block" in proposal.note
    (call,) = proposal.calls
    assert call.error is None and call.response.startswith("I think")
    assert (call.prompt_tokens, call.completion_tokens) == (120, 31)


def test_timeout_is_retried_then_succeeds(task, parents):
    sleeps = []
    with recorded_server([delayed(2.0), completion(FULL_REPLY)]) as server:
        proposal = make_proposer(server, "rewrite", sleeps=sleeps, timeout=0.5).propose(
            make_request(task, parents)
        )
    assert_candidate(proposal.code)
    assert proposal.calls[0].attempts == 2 and proposal.calls[0].error is None
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.01
    assert len(server.requests) == 2  # litellm did not retry on its own


def test_rate_limit_honours_retry_after(task, parents):
    sleeps = []
    with recorded_server([rate_limited("7"), completion(FULL_REPLY)]) as server:
        proposal = make_proposer(server, "rewrite", sleeps=sleeps).propose(
            make_request(task, parents)
        )
    assert_candidate(proposal.code)
    assert proposal.calls[0].attempts == 2 and len(server.requests) == 2
    assert sleeps == [7.0]


def test_backoff_grows_between_server_errors(task, parents):
    sleeps = []
    with recorded_server(
        [server_error(), server_error(), server_error(), completion(FULL_REPLY)]
    ) as server:
        proposal = make_proposer(server, "rewrite", sleeps=sleeps, backoff_seconds=1.0).propose(
            make_request(task, parents)
        )
    assert_candidate(proposal.code)
    assert proposal.calls[0].attempts == 4 and len(sleeps) == 3
    assert (
        0.5 <= sleeps[0] <= 1 and 1 <= sleeps[1] <= 2 and 2 <= sleeps[2] <= 4
    )  # doubling, jittered


def test_persistent_failure_is_recorded_not_raised(task, parents):
    with recorded_server([server_error()] * 3) as server:
        proposal = make_proposer(server, "rewrite", max_retries=2).propose(
            make_request(task, parents)
        )
    assert proposal.code is None and proposal.model == MODEL
    (call,) = proposal.calls
    assert call.attempts == 3 and call.response is None and "InternalServerError" in call.error
    assert "failed after 3 attempt(s)" in proposal.note
    assert len(server.requests) == 3
    assert API_KEY not in proposal.note and API_KEY not in call.error


def test_rejected_key_raises_without_retrying(task, parents):
    with recorded_server([unauthorized(), completion(FULL_REPLY)]) as server:
        with pytest.raises(ProposerError) as raised:
            make_proposer(server, "rewrite").propose(make_request(task, parents))
        assert len(server.requests) == 1
    assert API_KEY not in str(raised.value)


def test_bad_request_stops_without_retrying(task, parents):
    reply = Reply(
        status=400, body={"error": {"message": "bad request", "type": "invalid_request_error"}}
    )
    with recorded_server([reply, completion(FULL_REPLY)]) as server:
        with pytest.raises(ProposerError, match="check --model and --api-base"):
            make_proposer(server, "rewrite").propose(make_request(task, parents))
        assert len(server.requests) == 1


def test_too_long_a_prompt_is_recorded_not_retried(task, parents):
    # A 400 about this prompt alone: the next proposal, with other parents, may fit.
    reply = Reply(
        status=400,
        body={
            "error": {
                "message": "This model's maximum context length is 8192 tokens.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
    )
    with recorded_server([reply, completion(FULL_REPLY)]) as server:
        proposal = make_proposer(server, "rewrite").propose(make_request(task, parents))
    (call,) = proposal.calls
    assert proposal.code is None and call.attempts == 1 and "ContextWindow" in call.error


def test_cost_falls_back_to_the_configured_price(task, parents):
    with recorded_server(
        [completion(FULL_REPLY, prompt_tokens=1000, completion_tokens=500)] * 2
    ) as server:
        priced = make_proposer(server, "rewrite", price_per_million=(2.0, 10.0)).propose(
            make_request(task, parents)
        )
        unpriced = make_proposer(server, "rewrite").propose(make_request(task, parents))
    assert priced.cost_usd == pytest.approx((1000 * 2.0 + 500 * 10.0) / 1e6)
    assert unpriced.cost_usd == 0.0


def test_cost_of_a_known_model_comes_from_litellm(task, parents):
    reply = completion(FULL_REPLY, prompt_tokens=1000, completion_tokens=1000, model="gpt-4o-mini")
    with recorded_server([reply]) as server:
        proposal = make_proposer(
            server, "rewrite", models=["openai/gpt-4o-mini"], price_per_million=(1000.0, 1000.0)
        ).propose(make_request(task, parents))
    assert 0 < proposal.cost_usd < 0.01  # litellm's price map, not the (absurd) fallback price


def test_ensemble_choice_is_seeded_and_follows_the_models(task, parents):
    models = ["openai/model-a", "openai/model-b"]
    picks = []
    for _ in range(2):
        with recorded_server([completion(FULL_REPLY)] * 6) as server:
            proposer = make_proposer(server, "rewrite", models=models)
            proposals = [
                proposer.propose(make_request(task, parents, seed=seed)) for seed in range(6)
            ]
        picks.append([p.model for p in proposals])
        assert [r.body["model"] for r in server.requests] == [
            m.removeprefix("openai/") for m in picks[-1]
        ]
        assert_no_key_in_bodies(server)
    assert picks[0] == picks[1] and set(picks[0]) == set(models)


def test_ensemble_weights_prefer_useful_and_cheap_models():
    proposer = LLMProposer(["a", "b", "free"], sleep=lambda s: None)
    assert len(set(proposer.model_weights().values())) == 1  # nothing known: all equal
    proposer.stats["a"].calls, proposer.stats["a"].usable, proposer.stats["a"].cost_usd = (
        10,
        9,
        0.10,
    )
    proposer.stats["b"].calls, proposer.stats["b"].usable, proposer.stats["b"].cost_usd = (
        10,
        1,
        0.10,
    )
    proposer.stats["free"].calls, proposer.stats["free"].usable = 10, 9
    weights = proposer.model_weights()
    assert weights["a"] > 4 * weights["b"]
    assert weights["a"] < weights["free"] < 10 * weights["a"]  # cheaper wins, but not absurdly
    proposer.record_outcome("a", True)
    proposer.record_outcome("free", False)
    proposer.record_outcome("gone-model", True)  # ignored
    after = proposer.model_weights()
    assert after["a"] / after["free"] > weights["a"] / weights["free"]
    draws = [proposer.choose_model(random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1


def test_operator_choice_is_seeded_and_needs_material(task, parents, failure):
    proposer = LLMProposer([MODEL], sleep=lambda s: None)
    choose = lambda seed, **kw: proposer.choose_operator(make_request(task, seed=seed, **kw))  # noqa: E731
    assert {choose(s) for s in range(20)} == {"rewrite"}
    assert {choose(s, parents=parents[:1]) for s in range(40)} == {"rewrite", "diff"}
    assert {choose(s, parents=parents, failures=[failure]) for s in range(80)} == set(
        prompting.OPERATORS
    )
    assert [choose(s, parents=parents) for s in range(10)] == [
        choose(s, parents=parents) for s in range(10)
    ]
    with pytest.raises(ProposerError):
        LLMProposer([MODEL], operator_weights={"mutate": 1.0})
    with pytest.raises(ProposerError):
        LLMProposer([])


def test_no_outside_network_at_import_or_call(tmp_path):
    """litellm fetches a price map from GitHub at import unless LITELLM_LOCAL_MODEL_COST_MAP is
    set; llm.py sets it. An audit hook in a fresh interpreter sees every connection."""
    script = textwrap.dedent(f"""
        import sys, json
        outside = []
        LOCAL = ("127.0.0.1", "::1", "localhost", None)
        def hook(event, args):
            if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
                outside.append(str(args[1]))
            elif event == "socket.getaddrinfo" and args[0] not in LOCAL:
                outside.append(str(args[0]))
        sys.addaudithook(hook)
        sys.path.insert(0, {str(REPO / "tests")!r})
        import random
        from llm_server import recorded_server, completion
        from sandbox.tasks import load_task
        from scientist.proposers.base import ProposalRequest
        from scientist.proposers.llm import LLMProposer
        with recorded_server([completion({FULL_REPLY!r})]) as server:
            proposer = LLMProposer([{MODEL!r}], api_base=server.base_url, api_key={API_KEY!r})
            request = ProposalRequest(load_task("mirror_drift"), 0, 0, [], [], [], random.Random(0))
            proposal = proposer.propose(request)
        print(json.dumps(
            {{"outside": outside, "ok": proposal.code is not None, "jax": "jax" in sys.modules}}
        ))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"outside": [], "ok": True, "jax": False}


# --- parsing -----------------------------------------------------------------------------


def test_fenced_block_with_and_without_tag(task):
    for fence in ("```python", "```", "```py", "~~~python"):
        closing = fence[:3]
        parsed = parsing.extract_module(f"Here it is:\n{fence}\n{NEW_DRIFT}{closing}\nDone.", task)
        assert parsed.code == task.render(source=NEW_DRIFT), fence


def test_block_defining_the_entry_point_wins(task):
    reply = (
        "First a helper idea:\n```python\ndef helper(x):\n    return x * 2.0\n```\n"
        f"And the module:\n```python\n{NEW_DRIFT}```\nUsage:\n```python\ny = drift(r, a)\n```\n"
    )
    parsed = parsing.extract_module(reply, task)
    assert parsed.code == task.render(source=NEW_DRIFT) and "block 2 of 3" in parsed.note


def test_last_defining_block_is_the_answer(task, parents):
    reply = (
        f"The parent:\n```python\n{parents[0].code}```\nMy version:\n```python\n{NEW_DRIFT}```\n"
    )
    assert parsing.extract_module(reply, task).code == task.render(source=NEW_DRIFT)


def test_unfenced_module_with_prose_around_it(task):
    assert parsing.extract_module(NEW_DRIFT, task).code == task.render(source=NEW_DRIFT)
    parsed = parsing.extract_module(f"Sure, here you go.\n\n{NEW_DRIFT}\nHope this helps!", task)
    assert parsed.code is not None and "Hope" not in parsed.code and "Sure" not in parsed.code


def test_indented_fence_in_a_list(task):
    reply = "1. The module:\n\n   ```python\n" + textwrap.indent(NEW_DRIFT, "   ") + "   ```\n"
    assert parsing.extract_module(reply, task).code == task.render(source=NEW_DRIFT)


def test_thinking_section_is_ignored(task):
    draft = f"```python\n{DEF}\n    return 0\n```"
    reply = f"<think>\nmaybe\n{draft}\n</think>\n```python\n{NEW_DRIFT}```"
    assert parsing.extract_module(reply, task).code == task.render(source=NEW_DRIFT)


def test_cut_off_fence_runs_to_the_end(task):
    assert parsing.extract_module(f"```python\n{NEW_DRIFT}", task).code == task.render(
        source=NEW_DRIFT
    )
    truncated = parsing.extract_module(f"```python\n{NEW_DRIFT[:-25]}", task)
    assert truncated.code is None and "does not parse" in truncated.note


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("", "empty"),
        ("I cannot help with that.", "no code block"),
        ("```\njust some words here\n```", "does not parse"),
        (
            "```python\nclipped = jnp.clip(ratio, 0.8, 1.2)\nreturn clipped * advantage\n```",
            "does not define `def drift",
        ),
        ("```python\nimport jax.numpy as jnp\nx = jnp.ones(3)\n```", "does not define `def drift"),
        ("```python\ndef drift(ratio, advantage:\n    return ratio\n```", "does not parse"),
        ('```json\n{"a": 1}\n```', "none holds Python code"),
        (
            "```python\nclass A:\n    def drift(ratio, advantage):\n        return ratio\n```",
            "does not define `def drift",
        ),
    ],
)
def test_garbage_gives_none_with_a_reason(task, reply, reason):
    parsed = parsing.extract_module(reply, task)
    assert parsed.code is None and reason in parsed.note


def test_body_only_reply_is_refused(task):
    body = (
        "    clipped = jnp.clip(ratio, 0.8, 1.2)\n"
        "    return jnp.maximum((ratio - clipped) * advantage, 0.0)\n"
    )
    assert parsing.extract_module(body, task).code is None
    assert parsing.extract_module(f"```python\n{body}```", task).code is None


def test_diff_exact_and_whitespace_tolerant(task, parents):
    parent = parents[0].code
    exact = parsing.edit_module(DIFF_REPLY, parent, task)
    assert exact.code == task.render(source=parent.replace("0.8, 1.2", "0.9, 1.1"))
    # The model lost the indentation when quoting and wrapped the block in a fence.
    old_return = "return jnp.maximum((ratio - clipped) * advantage, 0.0)"
    loose = (
        "```\n"
        + edit_block(
            f"clipped = jnp.clip(ratio, 0.8, 1.2)   \n{old_return}",
            f"clipped = jnp.clip(ratio, 0.7, 1.3)\n{old_return} * 2.0",
        )
        + "```\n"
    )
    edited = parsing.edit_module(loose, parent, task)
    assert edited.code is not None, edited.note
    assert "    clipped = jnp.clip(ratio, 0.7, 1.3)\n" in edited.code and "* 2.0\n" in edited.code


def test_diff_blocks_apply_in_order(task, parents):
    reply = (
        DIFF_REPLY
        + "\n"
        + edit_block(CLIP.replace("0.8, 1.2", "0.9, 1.1"), CLIP.replace("0.8, 1.2", "0.95, 1.05"))
    )
    edited = parsing.edit_module(reply, parents[0].code, task)
    assert "0.95, 1.05" in edited.code and "2 edit block(s)" in edited.note


@pytest.mark.parametrize(
    "reply, reason",
    [
        (bad_diff().body["choices"][0]["message"]["content"], "does not match the parent"),
        (
            "<<<<<<< SEARCH\n    clipped = jnp.clip(ratio, 0.8, 1.2)\n>>>>>>> REPLACE\n",
            "no ======= line",
        ),
        (
            "<<<<<<< SEARCH\n    clipped = jnp.clip(ratio, 0.8, 1.2)\n=======\n    clipped = 1\n",
            "no >>>>>>> REPLACE",
        ),
        ("<<<<<<< SEARCH\n\n=======\n    x = 1\n>>>>>>> REPLACE\n", "empty SEARCH"),
        (edit_block(DEF, "def drift(ratio, advantage:"), "does not parse"),
        (edit_block(DEF, "def other(ratio, advantage):"), "does not define"),
        (edit_block(CLIP, CLIP), "unchanged"),
        (
            edit_block(CLIP, CLIP.replace("0.8", "0.7")) + edit_block(CLIP, CLIP),
            "edit block 2 does not match",
        ),
        ("Looks good as is.", "no SEARCH/REPLACE blocks"),
    ],
)
def test_bad_diffs_give_none_with_a_reason(task, parents, reply, reason):
    parsed = parsing.edit_module(reply, parents[0].code, task)
    assert parsed.code is None and reason in parsed.note, parsed.note


def test_diff_reply_with_a_whole_module_is_accepted(task, parents):
    parsed = parsing.edit_module(FULL_REPLY, parents[0].code, task)
    assert parsed.code == task.render(source=NEW_DRIFT) and "no edit blocks" in parsed.note


def test_prompts_dir_can_be_overridden(task, tmp_path, monkeypatch):
    for name in ("system.j2", "task.j2", "rewrite.j2"):
        (tmp_path / name).write_text(f"{name} for {{{{ task.name }}}}")
    monkeypatch.setenv("SCIENTIST_PROMPTS_DIR", str(tmp_path))
    messages = prompting.render_messages("rewrite", task)
    assert messages[0]["content"].strip() == "system.j2 for mirror_drift"
    assert "rewrite.j2 for mirror_drift" in messages[1]["content"]


def test_templates_refuse_undefined_names(task, tmp_path, monkeypatch):
    (tmp_path / "system.j2").write_text("{{ no_such_name }}")
    monkeypatch.setenv("SCIENTIST_PROMPTS_DIR", str(tmp_path))
    with pytest.raises(Exception, match="no_such_name"):
        prompting.system_message(task)
