"""What a response is: a text, or an episode (chat messages with tool calls and tool results,
message parts, a final environment state). This package is the one home of that content
model; every other part of Assay (imports, the engine and its prompts, checks, pages,
exports, the reward endpoint) calls it rather than reading messages itself.

* `episode` — the model (Episode, Message, Part, ToolCall), validation with errors that name
  the message index and the field, normalisation, steps, and the JSON shape stored and
  exported (OpenAI chat format).
* `render` — an episode rendered for a judge (compact, with a documented budget that elides
  the middle of long episodes and says so), and for pages.
"""
