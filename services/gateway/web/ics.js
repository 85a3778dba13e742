// An RFC 5545 calendar of events, built in the browser (until the server's
// GET /events.ics is there): CRLF lines folded at 75 octets, UTC times, a UID that
// stays the same per event and SEQUENCE = the event's version.

const encoder = new TextEncoder();

function escapeText(text) {
  return String(text).replace(/\\/g, "\\\\").replace(/;/g, "\\;").replace(/,/g, "\\,")
    .replace(/\r?\n/g, "\\n");
}

function utc(iso) {
  return new Date(iso).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// Fold a content line at 75 octets, never inside a UTF-8 character.
export function fold(line) {
  const parts = [];
  let current = "";
  let size = 0;
  for (const char of line) {
    const octets = encoder.encode(char).length;
    if (size + octets > (parts.length ? 74 : 75)) {
      parts.push(current);
      current = "";
      size = 0;
    }
    current += char;
    size += octets;
  }
  parts.push(current);
  return parts.join("\r\n ");
}

export function icsFile(events, now = new Date()) {
  const lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//EventPost//web app//EN", "CALSCALE:GREGORIAN"];
  for (const event of events) {
    lines.push("BEGIN:VEVENT",
      `UID:${event.id}@eventpost`,
      `DTSTAMP:${utc(now)}`,
      `DTSTART:${utc(event.starts_at)}`,
      ...(event.ends_at ? [`DTEND:${utc(event.ends_at)}`] : []),
      `SEQUENCE:${event.version}`,
      `SUMMARY:${escapeText(event.title)}`,
      ...(event.description ? [`DESCRIPTION:${escapeText(event.description)}`] : []),
      ...(event.place ? [
        `LOCATION:${escapeText([event.place.name, event.place.address].filter(Boolean).join(", "))}`,
        `GEO:${event.place.lat};${event.place.lng}`] : []),
      ...(event.topics.length ? [`CATEGORIES:${event.topics.map(escapeText).join(",")}`] : []),
      `STATUS:${event.status === "cancelled" ? "CANCELLED" : "CONFIRMED"}`,
      "END:VEVENT");
  }
  lines.push("END:VCALENDAR");
  return `${lines.map(fold).join("\r\n")}\r\n`;
}
