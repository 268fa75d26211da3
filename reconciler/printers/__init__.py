"""How the engine's results read: for a terminal, a log, tooling (JSON) and a PR comment.

The engine hands over data (`engine.plans.Plan`, `engine.revisiondiff.RevisionDiff`, the
`engine.events` it emits while carrying out a revision) and words nothing for a person; these
modules do: `plans` (a plan as text), `revisiondiff` (two revisions compared: text, JSON,
markdown) and `events` (one text or JSON line per event, and the loop's log of them).

A layer of its own between the commands and the loop above and the engine below (see
`[tool.importlinter]`): the commands print these lines and the loop logs the same ones, and
the loop may not import `cli`.
"""
