"""What a batch's member is: a candidate's data of a kind that runs as data (an expression's
bytecode, an LPO network's weights; sandbox/training/as_data.py) or a loaded function.

`member_data` is the one place that decides whether a source runs as data: the sandbox asks
it before loading anything, the trusted side to know a batch holds no candidate code.
"""

from collections.abc import Callable

from sandbox.training.bytecode import Bytecode, bytecode_function, expression_bytecode, interpret
from sandbox.training.lpo_network import LPONetwork, network_function, parse_lpo_module, run_network

DataMember = Bytecode | LPONetwork
# Each kind's runner: one branch of a batch's trainer serves all its members of that kind.
RUNNERS: dict[type, Callable] = {Bytecode: interpret, LPONetwork: run_network}


def member_data(source: str, entry_point: str, inputs: tuple[str, ...]) -> DataMember | None:
    """The data `source` runs as: an expression's bytecode, a rendered LPO network's weights,
    or None (code, loaded in a sandbox only)."""
    return expression_bytecode(source, entry_point, inputs) or parse_lpo_module(
        source, entry_point, inputs
    )


def as_function(member: Callable | DataMember) -> Callable:
    """A member as a function of its inputs (data bound to its kind's runner)."""
    if isinstance(member, Bytecode):
        return bytecode_function(member)
    if isinstance(member, LPONetwork):
        return network_function(member)
    return member


def describe(member: DataMember, entry_point: str) -> str:
    if isinstance(member, Bytecode):
        return f"{entry_point}() is an expression: {member.length} instructions, run as data"
    hidden = member.hidden.shape[1]
    return f"{entry_point}() is an LPO network ({hidden} hidden units): run as data"
