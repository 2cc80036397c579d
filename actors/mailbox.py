"""Peeking at an actor's mailbox, for the actors that hold work back while more of it is queued.

Holding back is only safe when the message behind is one that will reach the actor's own code and decide
again. A pykka proxy call or attribute read (the watchdog's ``stats()``, a ``failing`` read) is served by
pykka itself, not by ``on_receive``: an actor that held its work because such a message was queued would
then sit idle with the work held, until some unrelated message happened to arrive. So an actor asks
"is the next message one of mine that continues this batch?", never "is the mailbox empty?".
"""

from __future__ import annotations

from collections.abc import Collection

import pykka
from pykka.messages import ProxyCall


def next_message(actor: pykka.Actor) -> object | None:
    """The message at the head of ``actor``'s mailbox without taking it; ``None`` when it is empty.
    Read under the queue's own lock, as the actor loop takes from the other end."""
    inbox = actor.actor_inbox
    with inbox.mutex:  # type: ignore[attr-defined]
        queue = inbox.queue  # type: ignore[attr-defined]
        return queue[0].message if queue else None


def next_is(actor: pykka.Actor, kinds: tuple[type, ...]) -> bool:
    """Whether the next queued message is a plain message of one of ``kinds`` (handled by ``on_receive``)."""
    return isinstance(next_message(actor), kinds)


def next_calls(actor: pykka.Actor, methods: Collection[str]) -> bool:
    """Whether the next queued message is a proxy call of one of ``methods`` on the actor itself."""
    message = next_message(actor)
    return isinstance(message, ProxyCall) and len(message.attr_path) == 1 and message.attr_path[0] in methods
