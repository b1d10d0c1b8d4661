"""CSV headers from other tools: Mailchimp and listmonk column names, `--map`, delimiters.

Pure: a header row goes in, a column -> index mapping comes out. Our own header is
`email,name,locale,timezone,countries,topics`; the others are translated to it, and
the columns those exports carry that campaignbot has no use for are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: our columns, plus the parts other tools split a name into, and listmonk's status
OWN = ("email", "name", "locale", "timezone", "countries", "topics")
EXTRA = ("first_name", "last_name", "listmonk_status")

#: other tools' column names (lower case) -> ours
ALIASES: dict[str, str] = {
    # Mailchimp audience export
    "email address": "email",
    "first name": "first_name",
    "last name": "last_name",
    "cc": "countries",  # Mailchimp's two-letter country code of the subscriber
    # listmonk subscriber export (email, name as ours)
    "status": "listmonk_status",
    # common spellings
    "e-mail": "email",
    "e-mail address": "email",
    "language": "locale",
    "country": "countries",
}

#: columns of those exports that campaignbot does not use
IGNORED = frozenset(
    {
        # Mailchimp
        "address",
        "phone number",
        "birthday",
        "company",
        "member_rating",
        "optin_time",
        "optin_ip",
        "confirm_time",
        "confirm_ip",
        "latitude",
        "longitude",
        "gmtoff",
        "dstoff",
        "region",
        "last_changed",
        "leid",
        "euid",
        "notes",
        "tags",
        "unsub_time",
        "unsub_campaign_title",
        "unsub_campaign_id",
        "unsub_reason",
        "unsub_reason_other",
        "clean_time",
        "clean_campaign_title",
        "clean_campaign_id",
        # listmonk
        "id",
        "uuid",
        "attributes",
        "created_at",
        "updated_at",
    }
)

#: listmonk's status for an address that must never be mailed
BLOCKLISTED = "blocklisted"


def parse_mapping(items: Sequence[str]) -> dict[str, str | None]:
    """`--map "Email Address=email"` options -> {source (lower case): ours or None}.

    An empty target (`"Phone="`) ignores that column.
    """
    mapping: dict[str, str | None] = {}
    for item in items:
        source, sep, target = item.partition("=")
        source, target = source.strip().lower(), target.strip().lower()
        if not sep or not source:
            raise ValueError(f"--map {item!r}: expected 'COLUMN=name', e.g. 'Email Address=email'")
        if target and target not in OWN:
            raise ValueError(f"--map {item!r}: {target!r} is not one of {', '.join(OWN)}")
        mapping[source] = target or None
    return mapping


def parse_header(
    cells: Sequence[str], mapping: Mapping[str, str | None] | None = None
) -> dict[str, int]:
    """Column name -> index; `email` is required, the others optional, in any order."""
    mapping = mapping or {}
    columns: dict[str, int] = {}
    for index, raw in enumerate(cells):
        name = raw.strip().lstrip("\ufeff").lower()
        if name in mapping:
            target = mapping[name]
            if target is None:
                continue
            name = target
        elif name not in OWN:
            if name in IGNORED or not name:
                continue
            if name not in ALIASES:
                raise ValueError(
                    f"unknown column {raw!r}; expected {','.join(OWN)} (or Mailchimp/listmonk "
                    f"names), or map it: --map '{raw.strip()}=email' (empty name ignores it)"
                )
            name = ALIASES[name]
        if name in columns:
            raise ValueError(f"column {name!r} appears twice")
        columns[name] = index
    if "email" not in columns:
        raise ValueError(
            f"missing column 'email'; expected header {','.join(OWN)} "
            "(or --map 'Your Column=email')"
        )
    return columns


def sniff_delimiter(header_line: str) -> str:
    """`,`, `;` or tab: whichever splits the header line most (Excel writes `;` in
    Finnish and Polish locales). A one-column file is comma-separated."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","
