// Asking the person for an access token, in the page rather than in a bare browser prompt: it says
// why in plain words, hides what is typed, and can be cancelled. See the README's Security section.

import { markInvalid, unmarkInvalid } from "./announce.js";

const WHY = {
  missing: [
    "This segcast server needs an access token",
    "Ask whoever runs it for a token: a viewer token lets you watch, an admin token also lets you add and " +
      "remove cameras.",
  ],
  refused: [
    "That access token was not accepted",
    "It may be mistyped, expired (a signed token), or no longer configured on the server. Try another one.",
  ],
  role: [
    "This needs an admin token",
    "The token you gave lets you watch only. Adding, changing or removing cameras needs an admin token.",
  ],
};
const WHERE =
  "Tokens are set on the server: [auth] in its config file, or SEGCAST_VIEWER_TOKENS / SEGCAST_ADMIN_TOKENS.";

let dialog = null;

// The title where a page of several nodes (All cameras) names the one that asked (`asker`, as
// connection.js tokenAsker gives it): where the others took the page's token, it was not mistyped, the
// node's tokens were changed without theirs.
function askerTitle(reason, { name, othersTook }) {
  const title = `${name} needs ${reason === "role" ? "an admin" : "an access"} token`;
  return othersTook ? `${title} (the others took the one given)` : title;
}

function build() {
  const element = document.createElement("dialog");
  element.id = "token-dialog";
  element.className = "panel token-dialog";
  // Named and described by its own words, as a screen reader announces it on opening.
  element.setAttribute("aria-labelledby", "token-title");
  element.setAttribute("aria-describedby", "token-why");
  element.innerHTML = `
    <form method="dialog">
      <h2 class="token-title" id="token-title"></h2>
      <p class="token-why" id="token-why"></p>
      <label>Access token <input name="token" type="password" autocomplete="off" spellcheck="false" required></label>
      <p class="muted token-where"></p>
      <div class="token-actions">
        <button type="button" class="quiet" value="">Not now</button>
        <button type="submit" value="use">Use this token</button>
      </div>
    </form>`;
  element.querySelector(".token-where").textContent = WHERE;
  element.querySelector("button.quiet").addEventListener("click", () => element.close(""));
  document.body.append(element);
  return element;
}

// Where the keyboard goes on when the dialog closes with nothing to give the focus back to (it opened
// by itself, at page load, or what had the focus is gone): the heading of what the page shows, rather
// than <body>, from where the next Tab starts over at the top of the page. Focusable for this only.
function focusPageHeading() {
  const heading = [...document.querySelectorAll("h1")].find((h1) => h1.getClientRects().length > 0);
  if (!heading) return;
  if (!heading.hasAttribute("tabindex")) heading.tabIndex = -1;
  heading.focus({ preventScroll: true }); // a page scrolled down stays where it was
}

/**
 * Show the token dialog; `reason` is "missing", "refused" or "role"; `asker`, on a page of several nodes,
 * the one that asked ({name, othersTook}), named in the title. Resolves with the token, or null.
 * Closed, it gives the focus back to where it was, or else to the page's heading (focusPageHeading).
 */
export function askForToken(reason, asker = null) {
  dialog ??= build();
  const [title, why] = WHY[reason] ?? WHY.missing;
  dialog.querySelector(".token-title").textContent = asker ? askerTitle(reason, asker) : title;
  dialog.querySelector(".token-why").textContent = why;
  const input = dialog.querySelector("input");
  input.value = "";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        // A dialog with nothing to go back to leaves the focus in itself, hidden: <body>'s soon after.
        const left = document.activeElement;
        if (left === null || left === document.body || dialog.contains(left)) focusPageHeading();
        resolve(dialog.returnValue === "use" ? input.value.trim() || null : null);
      },
      { once: true },
    );
    dialog.showModal();
  });
}

/** The open dialog's field marked invalid after a refusal (`refused`) until something else is typed. */
export function markTokenRefused(refused) {
  const field = dialog?.querySelector("input");
  if (!field) return;
  if (!refused) {
    unmarkInvalid(field);
    return;
  }
  markInvalid(field);
  field.addEventListener("input", () => unmarkInvalid(field), { once: true });
  field.focus();
}
