// Saving the shapes of the zone editor (zones.js), which draws them, takes the person's edits and shows
// what the server has. The server is the record: every change is one PATCH of the stream's whole `zones`
// and `lines`, and of its whole `ignore_zones` where they are not the server's (a zone's change leaves
// the stream's ignore zones alone), and what the server answers (or, once a second, what the stream list
// says) is what is shown. A shape drawn or moved here is saved in fractions of the frame, every other one
// as the server gave it (shapes.js). A refusal (a polygon that crosses itself, a name taken twice) is
// shown in the server's words and the last saved shapes come back; so do they after a save that never
// reached the server (the network or the server is down), which is not tried again: the page says it
// was not saved, and once the server answers again its shapes are shown, whatever became of that save.
// The stream runs on through a change: only the counts of changed shapes start again.
// Each save is made only over the shapes it was drawn on (`If-Match`): where someone else changed
// them meanwhile (another tab, a script), theirs are shown and this change is not saved over them,
// unless all they did was add shapes: then it is made again with theirs, where no name is taken twice.
// Where the server could keep a change in its config file but "Save to config file" is unticked (its
// default: a person may not want the file rewritten), the change lasts only until a restart: the
// announcement says so, and a note beside the box stays until the shapes are saved there (ticking the box
// saves them at once) or the stream is removed (one added again under its id has nothing unsaved).
// Its own module because saves race the stream list's polls and the person's next edits: one save at a
// time per stream, a change made meanwhile sent after its answer, a late answer kept from wiping what
// was shown since, each state change on the right side of an await. Those rules read in one place.

import { ApiError, changeStream, getStream } from "./api.js";
import { refusalText } from "./shape_panel.js";
import { IGNORE, keyOf, serverList, shapesKey, withAdded } from "./shapes.js";

const NO_CONNECTION =
  "Not saved: no connection to segcast. The zones, lines and ignore zones it has saved are shown: " +
  "make the change again once it is back.";
const CHANGED_ELSEWHERE =
  "The zones, lines or ignore zones were changed elsewhere meanwhile: these are the saved ones now. " +
  "Make your change again.";
// What a change not worded otherwise (a move, a rename) did, as announced where it is not kept (said()).
export const CHANGED = "Zones, lines and ignore zones changed";
// Saves made again after the stream's other settings changed under them, or shapes were only added.
const MAX_RESENDS = 3;
const NOT_IN_FILE = "not saved to the config file: gone at a restart (tick Save to config file to keep it)";

/**
 * The PATCH of `shapes`: their zones and lines, and their ignore zones where they are not `ignoreHeld`
 * (JSON of those the server has), so a change of a zone or a line leaves the stream's ignore zones as
 * they are.
 */
function bodyOf(shapes, ignoreHeld) {
  const body = { zones: serverList(shapes, "zone"), lines: serverList(shapes, "line") };
  const ignoreZones = serverList(shapes, IGNORE);
  if (JSON.stringify(ignoreZones) !== ignoreHeld) body.ignore_zones = ignoreZones;
  return body;
}

export class ShapeSaver {
  // editor: the ZoneEditor whose shapes (editor.shapes, of editor.streamId) are saved, and whose
  // editor.options and editor.etag the last answer leaves as the server has them.
  constructor(editor) {
    this.editor = editor;
    // The shapes each save on its way sends, by stream id: a save outlives the view it was made in (the
    // person looks at another stream meanwhile), and a stream opened again while its save is unanswered
    // shows those shapes and makes its next change after it, over its answer (saving, commit()).
    this.inFlight = new Map();
    this.unsaved = false; // a change made while saving, sent once that save is answered
    this.changedAt = -Infinity; // performance.now() when the last change here was answered
    this.fileSaves = false; // the server has a config file to save to (GET /api/viewer)
    this.persistable = true; // and can save this stream's changes there (not one --source started)
    // The streams whose shapes were changed here, in effect but not saved to the config file since.
    this.unfiled = new Set();

    // Ticked because the note said so: the shapes shown are saved to the file now, not at the next change.
    const { persist } = editor.el;
    persist.addEventListener("change", () => {
      const still = editor.mode === "idle" && editor.pointer.drag === null && !editor.keyboard.nudging;
      if (persist.checked && still && this.unfiled.has(editor.streamId)) this.commit(editor.shapes);
    });
  }

  // Another stream opened: a change queued behind the last one's save is not this one's.
  reset() {
    this.unsaved = false;
  }

  // Saving to the config file is offered only where there is one (GET /api/viewer). A box the person
  // ticked stays so, unless save_config decides for them.
  useSettings(settings) {
    const { persist } = this.editor.el;
    this.fileSaves = Boolean(settings.config_file);
    if (settings.save_config || persist.disabled) persist.checked = settings.save_config;
    persist.disabled = settings.save_config;
    this.showPersist();
  }

  // A stream started by --source, or any without a config file, cannot be saved to one: its shapes last
  // until segcast stops, which a note says beside them (not announced at each change: it is no news).
  showPersist() {
    const { el, streamId, shapes } = this.editor;
    const keeps = this.fileSaves && this.persistable;
    el.persist.closest("label").hidden = !keeps;
    el.unfiled.hidden = !(keeps && this.unfiled.has(streamId));
    el.transient.hidden = keeps || shapes.length === 0;
  }

  // Whether a change made now lasts only until a restart though the server could keep it in its file.
  unticked() {
    return this.fileSaves && this.persistable && !this.editor.el.persist.checked;
  }

  // `what` a change did ("Zone “a” added"), as announced: with, where it is not kept, that it goes at a restart.
  said(what) {
    return this.unticked() ? `${what}, ${NOT_IN_FILE}.` : `${what}.`;
  }

  // The whole new list to the server; shown at once, and undone if the server refuses it. One save at
  // a time per stream, so that the server applies the changes in the order they were made: one made
  // while a save is in flight (a rename, a new shape) is sent when that save is answered, and only the
  // last answer is shown, also where the stream was left and opened again meanwhile. `what`: what the
  // change did, announced (said()); any other change (a move, a rename) is announced only where it is
  // not kept past a restart, as nothing was said of it before, and not at all where `quiet` (the
  // keyboard's corner moves, which say where the corner went: zone_keyboard.js). Resolves to whether the
  // change was saved, answered with no refusal while its stream is open; false for one sent after the
  // save in flight.
  async commit(shapes, what = null, quiet = false) {
    const { editor } = this;
    const streamId = editor.streamId;
    editor.shapes = shapes;
    editor.showError("");
    if (what !== null || (this.unticked() && !quiet)) editor.announce(this.said(what ?? CHANGED));
    editor.render();
    if (editor.saving) {
      this.unsaved = true;
      return false;
    }
    const errorsBefore = editor.errorsShown;
    let saved;
    try {
      saved = await this.save(streamId);
    } finally {
      // Whatever happened: a save left "in flight" would keep busy() true, and every later change unsaved.
      this.inFlight.delete(streamId);
    }
    if (streamId !== editor.streamId) return false; // the stream was left: a poll shows its shapes once it is opened
    const { options, etag, refusal } = saved;
    // A save answered late must not wipe what was refused meanwhile (a loiter time typed while it was out).
    if (refusal || editor.errorsShown === errorsBefore) editor.showError(refusal);
    this.changedAt = performance.now();
    editor.savedKey = null;
    editor.counts = null; // the next frame's counts are those of the new shapes
    // A refused rename leaves the shape selected under the name it kept, and the field showing that.
    const { renaming } = editor;
    editor.renaming = null;
    if (refusal && renaming?.to === editor.selected) editor.selected = renaming.from;
    if (editor.keyboard.nudging) {
      // Arrow keys are moving a corner: the shapes they move stay, and their save (the keyboard's
      // endNudge()) goes over these and shows what the server makes of them.
      editor.options = options;
      editor.etag = etag;
    } else {
      editor.adopt(options, etag); // even while a new shape is being drawn: it is not in them yet
    }
    const selected = editor.shapes.find((s) => keyOf(s) === editor.selected);
    if (refusal && selected) editor.showName(selected.name);
    // A new shape refused (it crosses itself) leaves the name typed for it, for the next try.
    const { adding } = editor;
    editor.adding = null;
    if (refusal && adding && !selected && editor.mode === "idle") {
      editor.el.name.value = adding.name;
      editor.typed = true;
    }
    return !refusal;
  }

  /**
   * Send the shapes shown, again while they changed meanwhile: the stream's shapes (and ETag) as the
   * last answer left them, and what to say of the refusal ("" for none). A save the server never
   * answered is not sent again (it may even have been made): the last saved shapes are shown, and the
   * next poll that reaches the server shows its own.
   */
  async save(streamId) {
    const { editor } = this;
    const { persist } = editor.el;
    let { options, etag } = editor;
    // The ignore zones the server has, as far as this save knows (JSON): as sent, not as answered, as
    // the server fills in what a drawn one left out (its `min_share`), which the shapes shown lack until
    // the answer is shown; a change queued meanwhile would send them again.
    let ignoreHeld = JSON.stringify(options?.ignore_zones ?? []);
    let refusal = "";
    let resends = 0;
    do {
      this.unsaved = false;
      this.inFlight.set(streamId, editor.shapes);
      const body = bodyOf(editor.shapes, ignoreHeld);
      const sent = body.ignore_zones ? JSON.stringify(body.ignore_zones) : ignoreHeld;
      const filing = persist.checked; // by ?persist=1, or by save_config (the box then ticked and off)
      try {
        ({ options, etag } = await changeStream(streamId, body, filing && !persist.disabled, etag));
        ignoreHeld = sent;
        refusal = "";
        this.filed(streamId, filing);
      } catch (error) {
        if (!(error instanceof ApiError)) return { options, etag, refusal: NO_CONNECTION };
        refusal = refusalText(error.message, body);
        if (error.stream !== null) {
          ({ options, etag } = error.stream); // made, only not saved: the next change goes over it
          ignoreHeld = sent;
          this.filed(streamId, false);
        } else if (error.status === 412) {
          const current = await getStream(streamId).catch(() => null);
          if (current === null) break; // the refusal as it is; the next poll brings the stream back
          // Only other settings changed (a new conf): the shapes this change was drawn on still hold.
          // So they do where shapes were only added (a line through the API while a zone was drawn
          // here): it is made again with those.
          const same = shapesKey(current.options) === shapesKey(options);
          const merged =
            same || streamId !== editor.streamId
              ? null
              : withAdded(editor.shapes, options, current.options, editor.host.size());
          const resend = (same || merged !== null) && resends++ < MAX_RESENDS;
          if (resend && merged) editor.shapes = merged;
          ({ options, etag } = current);
          ignoreHeld = JSON.stringify(options?.ignore_zones ?? []);
          refusal = resend ? "" : CHANGED_ELSEWHERE;
          this.unsaved = resend;
        }
      }
    } while (this.unsaved && streamId === editor.streamId);
    return { options, etag, refusal };
  }

  // A change of `streamId`'s shapes was made, and saved to the config file or not (`saved`): the note says
  // so until one is. Noted only where the server could save it (without, the note of showPersist() says so).
  filed(streamId, saved) {
    if (saved) this.unfiled.delete(streamId);
    else if (this.fileSaves && this.persistable) this.unfiled.add(streamId);
    this.showPersist();
  }

  // `streamId` was removed: its changes went with it, and a stream added again under its id starts from
  // what it is given (the file's, or none), so nothing of it is unsaved.
  forget(streamId) {
    this.unfiled.delete(streamId);
    this.showPersist();
  }
}
