"""``POST /webhooks/vapi``: authenticate (:mod:`.auth`), parse, route to a clinic (:mod:`.routing`), store
once in a group commit (:mod:`.group_commit`), answer (:mod:`.answers`; tool calls inline in
:mod:`.tool_replies`), then send the workers their message (:mod:`.background`). :mod:`.receiver` is the
handler that ties them together.
"""
