"""Render once, personalise per subscriber: the fast path to a message's bytes.

Everything of the fast path is here but the rendering itself (`Renderer._shape`
hands `make_shape` a function that renders with probes): probes, splitting and
filling the template output, and the message skeleton with its slots.

The templates of one alert are rendered once per (event, locale, time zone, ...)
with *probe* values standing in for the subscriber's name and address and the
three signed link tokens. The output is split at the probes, and each
subscriber's message is made by joining the pieces with their own values (the
name and address HTML-escaped in the HTML part, exactly as autoescaping would),
then quoted-printable encoding the bodies, as the slow path does.

That is only right when the templates just *print* those values. So the
templates are rendered twice with two different probe sets (other lengths,
letter case, characters that escaping, quoting or URL-encoding change) and the
split outputs must be identical; and any other use of a value (a comparison,
`|length`, `|upper`, a string method, `subscriber.id`) marks the probe as
tainted. Either way `prepare` returns None and the caller renders each subscriber
with the templates. Whether the name is empty is part of the cache key, so
`{% if subscriber.name %}` works.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from markupsafe import escape

from campaignbot.email.mime import Header, crlf, fold_line, one_line, qp, unstructured

#: the per-subscriber values the fast path fills in
SLOTS = ("name", "email", "unsubscribe", "preferences", "calendar")
#: slots whose value is a signed token inside a link (URL-safe: escaping leaves it alone)
TOKENS = ("unsubscribe", "preferences", "calendar")
#: slots printed HTML-escaped in the HTML part
_ESCAPED = ("name", "email")


class _Tracker:
    """Set when a template does more with a probe than print it."""

    tainted = False


class _Probe(str):
    """A string that notes every use except being printed (str(), concatenation)."""

    _tracker: _Tracker

    def __new__(cls, value: str, tracker: _Tracker) -> Self:
        self = super().__new__(cls, value)
        self._tracker = tracker
        return self

    def __bool__(self) -> bool:  # truthiness is part of the cache key, not a use
        return str.__len__(self) > 0

    __hash__ = str.__hash__


def _tainting(name: str) -> Callable[..., Any]:
    base = getattr(str, name)

    def method(self: _Probe, *args: Any, **kwargs: Any) -> Any:
        self._tracker.tainted = True
        return base(self, *args, **kwargs)

    method.__name__ = name
    return method


_UNTRACKED = {"__str__", "__new__", "__init__", "__hash__", "__bool__", "__repr__", "__format__"}
_UNTRACKED |= {"__getattribute__", "__setattr__", "__delattr__", "__class__", "__dir__"}
_UNTRACKED |= {"__init_subclass__", "__subclasshook__", "__reduce__", "__reduce_ex__"}
_UNTRACKED |= {"__sizeof__", "__doc__", "__getnewargs__", "__getstate__"}
for _name in dir(str):
    if _name not in _UNTRACKED and callable(getattr(str, _name)):
        setattr(_Probe, _name, _tainting(_name))


class SubscriberProbe:
    """`subscriber` in the probe render: name and email are probes, id is a use."""

    def __init__(
        self, name: str, email: str, locale: str, timezone: str, tracker: _Tracker
    ) -> None:
        self.name = name
        self.email = email
        self.locale = locale
        self.timezone = timezone
        self._tracker = tracker

    @property
    def id(self) -> int:
        self._tracker.tainted = True
        return 0


@dataclass(frozen=True)
class ProbeSet:
    """The stand-ins of one probe render: the subscriber and the link tokens."""

    subscriber: SubscriberProbe
    tokens: Mapping[str, str]
    tracker: _Tracker
    #: slot -> the text the slot shows as in the subject and text part / HTML part
    plain: Mapping[str, str]
    html: Mapping[str, str]


def _probes(variant: int, *, has_name: bool, locale: str, timezone: str) -> ProbeSet:
    tracker = _Tracker()
    tag = secrets.token_hex(6 + 3 * variant)  # two sets differ in length too
    # letter case differs between the sets; & < ' " and é change under escaping,
    # quoting and URL-encoding, so a transformed probe cannot go unnoticed
    name = f"Nm{tag}\u00e9&<'\"q" if variant == 0 else f"nM{tag}\u00e9&<'\"Q"
    email = f"eM{tag}&'x@probe.invalid" if variant == 0 else f"Em{tag}&'X@probe.invalid"
    values = {"name": name if has_name else "", "email": email}
    values |= {slot: f"cbT{slot[:2]}{tag}Zq" for slot in TOKENS}
    if not has_name:
        del values["name"]  # the empty name is printed as nothing: no slot
    subscriber = SubscriberProbe(
        _Probe(name, tracker) if has_name else "",
        _Probe(email, tracker),
        locale,
        timezone,
        tracker,
    )
    tokens = {slot: values[slot] for slot in TOKENS}
    html = {slot: str(escape(v)) if slot in _ESCAPED else v for slot, v in values.items()}
    return ProbeSet(subscriber, tokens, tracker, values, html)


def probe(value: str, probes: ProbeSet) -> str:
    """`value` (a link with a probe token) as a probe string."""
    return _Probe(value, probes.tracker)


Pieces = tuple[str, ...]  # literal, slot, literal, slot, ..., literal


def split(text: str, forms: Mapping[str, str]) -> Pieces:
    """`text` cut at every occurrence of a slot's form: literal and slot names alternate."""
    found: list[tuple[int, str, str]] = []
    for slot, form in forms.items():
        start = text.find(form)
        while start != -1:
            found.append((start, slot, form))
            start = text.find(form, start + len(form))
    found.sort()
    pieces: list[str] = []
    pos = 0
    for start, slot, form in found:
        if start < pos:  # overlapping probes: cannot be a plain print
            return ("", "", "", "")
        pieces += [text[pos:start], slot]
        pos = start + len(form)
    pieces.append(text[pos:])
    return tuple(pieces)


def fill(pieces: Pieces, values: Mapping[str, str]) -> str:
    """The text of `pieces` with each slot replaced by its value."""
    if len(pieces) == 1:
        return pieces[0]
    out = list(pieces)
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)


def wire_body(text: str) -> bytes:
    """A body as it goes out: quoted-printable, CRLF line ends (as the slow path)."""
    return crlf(qp(text)).encode("ascii")


@dataclass(frozen=True)
class EncodedBody:
    """`wire_body` of a split body with the lines that hold no subscriber value
    encoded once. Quoted-printable works line by line, so encoding the body equals
    encoding its lines one by one; only lines with a slot are encoded per subscriber."""

    segments: tuple[bytes | Pieces, ...]  # encoded lines, or one line's pieces

    @classmethod
    def of(cls, pieces: Pieces) -> EncodedBody:
        segments: list[bytes | Pieces] = []
        static: list[str] = []  # lines without a slot, not yet encoded
        line: list[str] = []  # the current line's pieces, literal first
        for i, piece in enumerate(pieces):
            if i % 2:  # a slot
                line.append(piece)
                continue
            head, newline, rest = piece.partition("\n")
            while newline:
                line.append(head + newline)
                if len(line) == 1:
                    static.append(line[0])
                else:
                    if static:
                        segments.append(wire_body("".join(static)))
                        static = []
                    segments.append(tuple(line))
                line = []
                head, newline, rest = rest.partition("\n")
            line.append(head)
        if len(line) > 1:  # the last line holds a slot
            if static:
                segments.append(wire_body("".join(static)))
                static = []
            segments.append(tuple(line))
        elif line[0] or static or not segments:
            segments.append(wire_body("".join(static) + line[0]))
        return cls(tuple(segments))

    def render(self, values: Mapping[str, str]) -> bytes:
        out = [
            segment if isinstance(segment, bytes) else wire_body(fill(segment, values))
            for segment in self.segments[:-1]
        ]
        last = self.segments[-1]
        if isinstance(last, bytes):
            out.append(last)
        elif (tail := fill(last, values)) or not out:
            # the body's last line; left empty, the body already ends with a line
            # break and encoding the whole adds none
            out.append(wire_body(tail))
        return b"".join(out)


@dataclass(frozen=True)
class Parts:
    """Subject, text and HTML of one message shape, split at the subscriber's values."""

    subject: Pieces
    text: Pieces
    html: Pieces

    def render(self, values: Mapping[str, str]) -> tuple[str, str, str]:
        """(subject, text, html) for one subscriber; `values` as printed (not escaped)."""
        escaped = _escaped(values)
        return fill(self.subject, values), fill(self.text, values), fill(self.html, escaped)

    def render_wire(self, values: Mapping[str, str]) -> tuple[str, bytes, bytes]:
        """`render` with the bodies as `wire_body` makes them, the unchanging lines
        encoded once per shape (a value with a line break takes the plain way)."""
        if any("\n" in v or "\r" in v for v in values.values()):
            subject, text, html = self.render(values)
            return subject, wire_body(text), wire_body(html)
        text_body, html_body = self._encoded
        return (
            fill(self.subject, values),
            text_body.render(values),
            html_body.render(_escaped(values)),
        )

    @functools.cached_property
    def _encoded(self) -> tuple[EncodedBody, EncodedBody]:
        return EncodedBody.of(self.text), EncodedBody.of(self.html)


def _escaped(values: Mapping[str, str]) -> dict[str, str]:
    escaped = dict(values)
    for slot in _ESCAPED:
        escaped[slot] = str(escape(values[slot]))
    return escaped


Render = Callable[[ProbeSet], tuple[str, str, str]]


def prepare(render: Render, *, has_name: bool, locale: str, timezone: str) -> Parts | None:
    """The split parts when `render` only prints the subscriber's values, else None.

    `render` renders (subject, text, html) with the probe set's subscriber and
    tokens; an exception means "use the slow path" (which reports it properly).
    """
    results: list[Parts] = []
    for variant in (0, 1):
        probes = _probes(variant, has_name=has_name, locale=locale, timezone=timezone)
        try:
            subject, text, html = render(probes)
        except Exception:  # noqa: BLE001 - the slow path renders again and reports it
            return None
        if probes.tracker.tainted:
            return None
        results.append(
            Parts(split(subject, probes.plain), split(text, probes.plain), split(html, probes.html))
        )
    if results[0] != results[1]:
        return None
    return results[0]


def fill_bytes(pieces: tuple[bytes | str, ...], values: Mapping[str, bytes]) -> bytes:
    """`pieces` (bytes literals and slot names) joined with `values` for the slots."""
    return b"".join(values[p] if isinstance(p, str) else p for p in pieces)


def split_bytes(data: bytes, markers: Mapping[str, bytes]) -> tuple[bytes | str, ...] | None:
    """`data` cut at each marker (each must occur exactly once); None otherwise."""
    found: list[tuple[int, str, bytes]] = []
    for slot, marker in markers.items():
        if data.count(marker) != 1:
            return None
        found.append((data.index(marker), slot, marker))
    found.sort()
    pieces: list[bytes | str] = []
    pos = 0
    for start, slot, marker in found:
        pieces += [data[pos:start], slot]
        pos = start + len(marker)
    pieces.append(data[pos:])
    return tuple(pieces)


# --- the message: bytes with slots for the per-subscriber headers and bodies ---------

TEXT_MARK = "@@campaignbot-text@@"
HTML_MARK = "@@campaignbot-html@@"
#: the headers that differ per subscriber, marked where they go in the skeleton
HEADER_SLOTS = {
    "subject": "Subject",
    "to": "To",
    "date": "Date",
    "msgid": "Message-ID",
    "unsub": "List-Unsubscribe",
}


@dataclass(frozen=True)
class Shape:
    """One message shape: the split template output and the message bytes with
    slots for the per-subscriber headers and bodies."""

    parts: Parts
    skeleton: tuple[bytes | str, ...]

    @property
    def fixed_subject(self) -> bool:
        """The subject mentions no subscriber value: it is in the skeleton already."""
        return len(self.parts.subject) == 1


def make_shape(
    render: Render,
    *,
    has_name: bool,
    locale: str,
    timezone: str,
    fixed_subject: Callable[[str], Header],
    message: Callable[[Mapping[str, Header]], bytes],
) -> Shape | None:
    """The shape of every message whose templates `render` renders, or None when the
    templates need the slow path. `message` builds the wire bytes from the headers
    given (markers where the subscriber's go) with TEXT_MARK and HTML_MARK as bodies;
    `fixed_subject` is the Subject header of a subject that names no subscriber value."""
    parts = prepare(render, has_name=has_name, locale=locale, timezone=timezone)
    if parts is None:
        return None
    marks = {slot: Header(name, f"@@campaignbot-{slot}@@") for slot, name in HEADER_SLOTS.items()}
    fixed = len(parts.subject) == 1
    if fixed:
        marks["subject"] = fixed_subject(one_line(parts.subject[0]))
    data = message(marks)
    markers = {slot: fold_line(header) for slot, header in marks.items()}
    markers |= {"text": TEXT_MARK.encode(), "html": HTML_MARK.encode()}
    if fixed:
        del markers["subject"]
    skeleton = split_bytes(data, markers)
    return None if skeleton is None else Shape(parts, skeleton)


def fill_shape(shape: Shape, values: Mapping[str, str], header_lines: Mapping[str, bytes]) -> bytes:
    """One subscriber's message: `values` for the template slots (SLOTS), the folded
    `header_lines` for HEADER_SLOTS but the subject, which comes from the templates."""
    subject, text, html = shape.parts.render_wire(values)
    lines = dict(header_lines)
    lines["subject"] = b"" if shape.fixed_subject else fold_line(unstructured("Subject", subject))
    lines |= {"text": text, "html": html}
    return fill_bytes(shape.skeleton, lines)
