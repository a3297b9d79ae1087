"""Evidence quoted from an episode: a quote anchored to one message (a step, for a step
criterion) must occur in what the trajectory view shows for that message.

A message shows its text, its reasoning, each tool call's arguments and, for an assistant
turn, the outputs of its calls (shown beside them). People select text on the page, which
joins lines and spaces differently from the stored text, so whitespace is compared loosely:
any run of spaces and line breaks matches any other.
"""

from __future__ import annotations

from annotation.content.episode import Episode


def _squeezed(text: str) -> str:
    return " ".join(text.split())


def message_texts(episode: Episode, index: int) -> list[str]:
    """What the trajectory view shows for message `index` (an IndexError when there is none)."""
    if not 0 <= index < len(episode.messages):
        raise IndexError(index)
    message = episode.messages[index]
    texts = [message.text, message.reasoning]
    for call in message.tool_calls:
        texts.append(call.arguments_json(indent=2))
        result = episode.tool_result(call.id)
        if result is not None:
            texts.append(result.text)
    return [t for t in texts if t]


def quoted_from(episode: Episode, index: int, quote: str) -> bool:
    """Whether `quote` occurs in message `index` of the episode."""
    try:
        texts = message_texts(episode, index)
    except IndexError:
        return False
    wanted = _squeezed(quote)
    return bool(wanted) and any(wanted in _squeezed(t) for t in texts)
