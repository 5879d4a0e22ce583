// What happened at an event, in words: one wording for the stream view's list (events.js) and the event
// history page (history.js), so a person reads the same event the same way on both.

/** "#12 person entered porch", "#3 car crossed gate (in)", "#7 dog: track ended after 4.2 s". */
export function describeEvent(event) {
  const who = `#${event.id} ${event.class}`;
  const seconds = (s) => `${Number(s).toFixed(1)} s`;
  switch (event.type) {
    case "zone_enter":
      return `${who} entered ${event.zone}`;
    case "zone_exit":
      return `${who} left ${event.zone} after ${seconds(event.dwell)}`;
    case "loiter":
      return `${who} has been in ${event.zone} for ${seconds(event.dwell)}`;
    case "line_cross":
      return `${who} crossed ${event.line} (${event.direction})`;
    case "track":
      return event.event === "end" ? `${who}: track ended after ${seconds(event.age)}` : `${who}: track started`;
    default:
      return `${who}: ${event.type}`;
  }
}
