"""Bytecode: a candidate that is nothing but an expression, run as data.

A tree from sandbox/expressions.py (the mutation proposer's genome, or any candidate module
that parses exactly into one, `parse_module`) compiles to fixed-size register bytecode:
`MAX_INSTRUCTIONS` rows of (opcode, three argument registers, a constant), each writing its
own register, the last one the result. One interpreter runs all bytecode, so a batch of
such candidates trains with one compiled program that does not depend on which candidates
they are: the same XLA executable for every batch of that size at a budget, which a
persistent compilation cache then keeps across batches and campaigns.

The interpreter's operators are the jax functions `expressions.render_body` writes, so a
bytecode computes what its rendered module computes.

("Program" elsewhere means a compiled XLA program; this is the candidate's own data.)
"""

import functools
from dataclasses import dataclass

import numpy as np

from sandbox import expressions as ex
from sandbox.training.as_data import runner

MAX_INSTRUCTIONS = 32  # GP trees have at most 30 nodes; longer expressions run as code
# The opcodes: constant, input number `a`, then the operators (no JAX needed to encode: the
# trusted side encodes too).
CONST, INPUT = 0, 1
OPERATORS = tuple(ex.OPS)
OPCODES = {name: index + 2 for index, name in enumerate(OPERATORS)}


@functools.cache
def _jax_operators() -> dict:
    """name -> (arity, jax function): what expressions.render_body writes for each."""
    import jax
    import jax.numpy as jnp

    table = {
        "add": (2, jnp.add),
        "sub": (2, jnp.subtract),
        "mul": (2, jnp.multiply),
        "div": (2, jnp.divide),
        "neg": (1, jnp.negative),
        "tanh": (1, jnp.tanh),
        "relu": (1, jax.nn.relu),
        "square": (1, jnp.square),
        "abs": (1, jnp.abs),
        "log": (1, jnp.log),
        "exp": (1, jnp.exp),
        "softplus": (1, jax.nn.softplus),
        "sigmoid": (1, jax.nn.sigmoid),
        "maximum": (2, jnp.maximum),
        "minimum": (2, jnp.minimum),
        "clip": (3, jnp.clip),
        "where": (3, lambda c, a, b: jnp.where(c >= 0, a, b)),
        "where_gt": (3, lambda c, a, b: jnp.where(c > 0, a, b)),
    }
    assert set(table) == set(OPERATORS), "every expression operator needs an interpreter op"
    return table


@dataclass(frozen=True)
class Bytecode:
    """[MAX_INSTRUCTIONS] opcodes, [MAX_INSTRUCTIONS, 3] argument registers, constants."""

    opcodes: np.ndarray
    args: np.ndarray
    constants: np.ndarray
    length: int  # instructions before the padding
    tree: ex.Node  # what it computes

    def slot(self) -> tuple[np.ndarray, ...]:
        """The arrays a trainer's member slot holds."""
        return self.opcodes, self.args, self.constants

    def empty(self) -> "Bytecode":
        """A slot's filler (never trained)."""
        return encode(ex.Const(0.0), ())


class TooLong(ValueError):
    pass


def encode(tree: ex.Node, inputs: tuple[str, ...]) -> Bytecode:
    """The bytecode of a tree over `inputs`; shared subtrees are computed once. TooLong when
    it needs more than MAX_INSTRUCTIONS registers."""
    rows: list[tuple[int, tuple[int, int, int], float]] = []
    register: dict[ex.Node, int] = {}

    def emit(node: ex.Node) -> int:
        if node in register:
            return register[node]
        if isinstance(node, ex.Const):
            row = (CONST, (0, 0, 0), float(node.value))
        elif isinstance(node, ex.Var):
            row = (INPUT, (inputs.index(node.name), 0, 0), 0.0)
        else:
            operands = [emit(child) for child in node.args]
            row = (OPCODES[node.name], tuple((operands * 3)[:3]), 0.0)
        if len(rows) == MAX_INSTRUCTIONS:
            raise TooLong(f"the expression needs more than {MAX_INSTRUCTIONS} instructions")
        rows.append(row)
        register[node] = len(rows) - 1
        return register[node]

    result = emit(tree)
    length = len(rows)
    while len(rows) < MAX_INSTRUCTIONS:  # padding copies the result forward: max(r, r) = r
        rows.append((OPCODES["maximum"], (result, result, result), 0.0))
        result = len(rows) - 1
    opcodes = np.array([r[0] for r in rows], np.int32)
    args = np.array([r[1] for r in rows], np.int32)
    constants = np.array([r[2] for r in rows], np.float64)  # cast to the inputs' dtype when run
    return Bytecode(opcodes, args, constants, length, tree)


def expression_bytecode(source: str, entry_point: str, inputs: tuple[str, ...]) -> Bytecode | None:
    """The bytecode of a candidate module that is exactly an expression (never executed:
    parsed with `ast`), or None."""
    tree = ex.parse_module(source, entry_point, inputs)
    if tree is None:
        return None
    try:
        return encode(tree, inputs)
    except TooLong:
        return None


def bytecode_function(bytecode: Bytecode):
    """The bytecode as a function of its inputs, `Partial(jit(interpret), arrays)`: a pytree
    whose leaves are the bytecode's arrays, so whatever takes it as an argument of a jitted
    function (the validity probes, sandbox/pieces/base.py) compiles once for all bytecode.
    The constants stay float64 until the inputs' dtype is known."""
    from jax.tree_util import Partial

    return Partial(_jitted_interpret(), (bytecode.opcodes, bytecode.args, bytecode.constants))


def tree_function(tree: ex.Node, inputs: tuple[str, ...]):
    """What bytecode computes, as plain JAX operations on its tree (no scan, no switch):
    the form the certificate bounds (sandbox/checks/intervals.py), the same operators the
    interpreter runs. Built from the parsed tree, never from candidate code."""
    import jax.numpy as jnp

    operators = _jax_operators()

    def evaluate(node, env):
        if isinstance(node, ex.Const):
            return jnp.asarray(node.value, jnp.result_type(float))
        if isinstance(node, ex.Var):
            return env[node.name]
        _, function = operators[node.name]
        return function(*(evaluate(child, env) for child in node.args))

    def function(*values):
        env = dict(zip(inputs, values, strict=True))
        shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in values))
        return jnp.broadcast_to(evaluate(tree, env), shape).astype(values[0].dtype)

    return function


def interpret(bytecode, *inputs):
    """The bytecode's value, elementwise on `inputs` (arrays of one shape). `bytecode` is the
    (opcodes, args, constants) triple, concrete or traced: only the registers' values depend
    on it, never the computation. The instructions are a scan whose body is one conditional
    on the opcode, so only the chosen operator runs (no NaN from an unchosen one reaches a
    gradient) and the compiled program stays small whatever the bytecode's length."""
    import jax.numpy as jnp
    from jax import lax

    x = jnp.broadcast_arrays(*(jnp.asarray(v, jnp.result_type(float)) for v in inputs))
    stacked = jnp.stack(x)
    dtype = stacked.dtype

    def operator(arity, function):
        return lambda a, b, c, constant, i: function(*(a, b, c)[:arity])

    branches = [
        lambda a, b, c, constant, i: jnp.full_like(a, constant),
        lambda a, b, c, constant, i: stacked[i],
        *(operator(*_jax_operators()[name]) for name in OPERATORS),
    ]

    def step(registers, instruction):
        row, opcode, arg, constant = instruction
        a, b, c = (registers[arg[k]] for k in range(3))
        value = lax.switch(opcode, branches, a, b, c, constant.astype(dtype), arg[0])
        return registers.at[row].set(value), None

    opcodes, args, constants = bytecode
    registers = jnp.zeros((MAX_INSTRUCTIONS, *x[0].shape), dtype)
    rows = jnp.arange(MAX_INSTRUCTIONS)
    registers, _ = lax.scan(step, registers, (rows, opcodes, args, constants))
    return registers[-1]


_jitted_interpret = runner(interpret)
