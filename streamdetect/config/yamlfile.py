"""YAML text -> plain data, with every mistake located by line and key path.

PyYAML raises whatever its constructors raise: ``ValueError`` for ``2024-02-30`` (a date whose day does not
exist), for ``!!int 'zz'`` or ``!!timestamp 'x'``, with no line and no key. Composing the node tree first and
constructing it second separates the two kinds of mistake: syntax errors come from composing, with marks, and a
value that cannot be built is found again by building each scalar on its own, so every bad value is reported
with its key path and line, all at once.
"""

from __future__ import annotations

from typing import Any

import yaml

Problem = tuple[str, str]


class YamlProblems(Exception):
    """The text is not usable YAML; ``problems`` holds one ``(key path, message)`` per mistake."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def syntax_problem(error: yaml.MarkedYAMLError, text: str) -> str:
    """The message for a syntax error, at the line a reader would look at.

    PyYAML marks the point where it gave up: for an unclosed quote or bracket that is the end of the stream
    (one line past the last line of the file), for a key without ``:`` the start of the next line. The context
    mark (where the unfinished thing started) is then the line to show."""
    problem, mark, context = error.problem or str(error), error.problem_mark, error.context_mark
    at_end = mark is not None and mark.index >= len(text.rstrip())
    gave_up_late = problem.startswith("could not find expected ':'")
    if context is not None and (at_end or gave_up_late):
        return f"not valid YAML: {_where(context)}{problem} ({error.context})"
    if mark is not None:
        last_line = max(text.count("\n") - (1 if text.endswith("\n") else 0), 0)
        if mark.line > last_line:  # past the end of the file: the last line is where it went wrong
            mark = yaml.Mark(mark.name, mark.index, last_line, 0, None, 0)  # no buffer: no snippet
    return f"not valid YAML: {_where(mark)}{problem}"


def _key(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "?"


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def _value_problems(root: yaml.Node, max_nodes: int) -> list[Problem]:
    """Build each scalar alone and report those that fail. Walks without recursion, visits a node shared
    through aliases once, and stops after ``max_nodes`` nodes (an alias bomb must not expand here either)."""
    problems: list[Problem] = []
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack and len(seen) < max_nodes:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend((value, _join(path, _key(key))) for key, value in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, _join(path, i)) for i, item in reversed(list(enumerate(node.value))))
        else:
            try:
                yaml.SafeLoader("").construct_object(node, deep=True)
            except Exception as e:  # noqa: BLE001 - any constructor failure is the user's value
                kind = node.tag.rsplit(":", 1)[-1]
                hint = "; quote it to keep it as text" if kind == "timestamp" else ""
                reason = (isinstance(e, yaml.MarkedYAMLError) and e.problem) or str(e)
                problems.append((path, f"{_where(node.start_mark)}{node.value!r} is not a valid {kind} "
                                       f"({reason}){hint}"))
    return problems


def read_yaml(text: str, max_nodes: int, max_depth: int) -> Any:
    """Parse one YAML document; raises ``YamlProblems`` for any mistake, never another exception."""
    try:
        loader = yaml.SafeLoader(text)  # the reader already refuses control characters
    except yaml.YAMLError as e:
        raise YamlProblems([("", f"not valid YAML: {e}")]) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            raise YamlProblems([("", syntax_problem(e, text))]) from None
        except yaml.YAMLError as e:
            raise YamlProblems([("", f"not valid YAML: {e}")]) from None
        except RecursionError:
            raise YamlProblems([("", f"not valid YAML: nested too deeply (over {max_depth} levels are "
                                     "refused)")]) from None
        if node is None:
            return None
        try:
            return loader.construct_document(node)
        except RecursionError:
            raise YamlProblems([("", f"nested more than {max_depth} levels deep")]) from None
        except Exception as e:  # noqa: BLE001 - located below, or reported as it came
            problems = _value_problems(node, max_nodes)
            if not problems:
                marked = e if isinstance(e, yaml.MarkedYAMLError) else None
                mark = marked.problem_mark if marked is not None else None
                reason = (marked is not None and marked.problem) or f"{type(e).__name__}: {e}"
                problems = [("", f"not valid YAML: {_where(mark)}{reason}")]
            raise YamlProblems(problems) from None
    finally:
        loader.dispose()
