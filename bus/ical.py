"""RFC 5545 content lines, as every calendar EventPost writes them (the gateway's feeds,
the mailer's invitations): TEXT escaping, UTC and local DATE-TIMEs, folding at 75
octets with CRLF line ends."""
from datetime import timezone

LINE_OCTETS = 75


def text(value):
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newline escaped."""
    return (str(value).replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def utc_stamp(moment):
    """A UTC DATE-TIME, e.g. ``20261205T193000Z``."""
    return local_stamp(moment.astimezone(timezone.utc)) + "Z"


def local_stamp(moment):
    """A DATE-TIME as the wall clock shows it (for a ``TZID=`` property)."""
    # not strftime: its %Y does not pad years before 1000 on every platform
    return (f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
            f"T{moment.hour:02d}{moment.minute:02d}{moment.second:02d}")


def content(lines):
    """Lines as the bytes of a calendar: each folded, each ending in CRLF."""
    return "".join(fold(line) for line in lines).encode()


def fold(line):
    """One content line and its CRLF, folded so no line is longer than 75 octets
    (RFC 5545 3.1): a continuation starts with a space, never inside a character."""
    if len(line) <= LINE_OCTETS // 4 or len(line.encode()) <= LINE_OCTETS:
        return line + "\r\n"
    if line.isascii():  # one octet per character: plain slices
        step = LINE_OCTETS - 1
        rest = line[LINE_OCTETS:]
        parts = [line[:LINE_OCTETS]] + [rest[i:i + step] for i in range(0, len(rest), step)]
        return "\r\n ".join(parts) + "\r\n"
    parts, current, size, limit = [], [], 0, LINE_OCTETS
    for char in line:
        octets = len(char.encode())
        if size + octets > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, LINE_OCTETS - 1
        current.append(char)
        size += octets
    parts.append("".join(current))
    return "\r\n ".join(parts) + "\r\n"
