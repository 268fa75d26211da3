"""A plan (`engine.plans.Plan`) as text: one line per object, each update's diff below it.

What `plan` and `apply --dry-run` print, and the lines `printers.revisiondiff` builds the
`diff` command's output and the PR comment from.
"""

from __future__ import annotations

from reconciler.engine import plans

_SYMBOL = {
    plans.Action.CREATE: "+",
    plans.Action.UPDATE: "~",
    plans.Action.DELETE: "-",
    plans.Action.UNCHANGED: "=",
}


def summary(plan: plans.Plan) -> str:
    """`2 to create, 1 to update, 1 to delete, 1 unchanged`."""
    count = plan.count
    return (
        f"{count(plans.Action.CREATE)} to create, {count(plans.Action.UPDATE)} to update, "
        f"{count(plans.Action.DELETE)} to delete, {count(plans.Action.UNCHANGED)} unchanged"
    )


def headline(step: plans.Step) -> str:
    """`~ update apps/v1/Deployment/ns/web`: the step's line, above its diff."""
    return f"{_SYMBOL[step.action]} {step.action.value} {step.key}"


def text(plan: plans.Plan, show_unchanged: bool = False) -> str:
    """The plan for a terminal: one line per object, each update's diff below it, and the
    summary last."""
    lines = []
    for step in plan.steps:
        if step.action is plans.Action.UNCHANGED and not show_unchanged:
            continue
        lines.append(headline(step))
        if step.action is plans.Action.UPDATE and step.diff:
            lines.extend(f"    {line}" for line in step.diff.rstrip("\n").splitlines())
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"
