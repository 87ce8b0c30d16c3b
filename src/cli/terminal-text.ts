/**
 * Model output on its way to a terminal: a model (or a prompt-injected one) can write escape sequences that move the
 * cursor, rewrite earlier lines, change the window title or hide text. Every control character except newline and
 * tab is shown as its Unicode control picture instead (ESC as U+241B), so nothing reaches the terminal as a command
 * and what the model wrote stays visible. Bidirectional overrides and isolates, which reorder what is displayed, are
 * dropped. The mapping is character by character, so the safe form of a prefix is a prefix of the safe form: text
 * streamed in pieces prints the same as the whole.
 */

const bidiControls = /[\u202A-\u202E\u2066-\u2069]/g;

/** `text` with control characters made visible and harmless (see the module comment). */
export function terminalSafe(text: string): string {
  return text.replace(bidiControls, "").replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, (character) => {
    const code = character.charCodeAt(0);
    if (code < 0x20) return String.fromCharCode(0x2400 + code); // ␀ .. ␟
    if (code === 0x7f) return "\u2421"; // ␡
    return "\uFFFD"; // C1 controls have no control pictures
  });
}
