"""Small edits of an onnx ``GraphProto`` shared by the export routes."""
from __future__ import annotations


def drop_unused(graph) -> None:
    """Remove, in place, the nodes whose outputs nothing reads (no graph output, no other
    node), then the initializers no node reads."""
    wanted = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in wanted for o in node.output):
            keep.append(node)
            wanted.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    used = {i for n in graph.node for i in n.input}
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def producers(graph) -> dict:
    """Output name -> the node making it."""
    return {o: node for node in graph.node for o in node.output}
