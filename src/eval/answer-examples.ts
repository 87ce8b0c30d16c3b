/**
 * Worked exchanges put before the questions of a judged benchmark when answers are generated with `shots: 2`, as
 * Dromedary's final model was evaluated on the Vicuna questions with a 2-shot prompt (one coding exchange and one
 * about renewable energy; method-spec, Vicuna benchmark). These two are written for selfalign.
 */
import type { ChatTurn } from "./prompt-template.js";

export const answerExamples: readonly Required<ChatTurn>[] = [
  {
    user: "Write a Python function that tells whether a word reads the same backwards, ignoring letter case.",
    assistant: [
      "Here is a short function that does it:",
      "",
      "```python",
      "def is_palindrome(word: str) -> bool:",
      '    """True when `word` reads the same from both ends, whatever the letter case."""',
      "    folded = word.casefold()",
      "    return folded == folded[::-1]",
      "```",
      "",
      "How it works:",
      '1. `casefold()` turns the word into a caseless form, so "Level" and "level" compare alike (it also handles',
      '   letters such as the German "ß" better than `lower()`).',
      "2. `folded[::-1]` is the same string read from the end to the start.",
      "3. The word is a palindrome exactly when the two are equal.",
      "",
      'For example, `is_palindrome("Racecar")` returns `True` and `is_palindrome("python")` returns `False`. If you',
      "also want to skip spaces and punctuation (for phrases), keep only letters first:",
      "`folded = ''.join(ch for ch in word.casefold() if ch.isalnum())`.",
    ].join("\n"),
  },
  {
    user: "Why are more countries building wind and solar farms, and what makes them hard to rely on?",
    assistant: [
      "Several reasons push countries toward wind and solar power:",
      "",
      "1. Cost: the price of solar panels and wind turbines has fallen steeply over the last decades, and in many",
      "   places new wind or solar capacity is now among the cheapest ways to produce electricity.",
      "2. Climate and air quality: they emit no carbon dioxide or smoke while running, which helps countries meet",
      "   emission targets and reduces the health costs of burning coal and gas.",
      "3. Energy security: sunlight and wind are domestic resources, so a country depends less on imported fuel and",
      "   on its price swings.",
      "",
      "The main difficulties:",
      "",
      "1. Variability: output follows the weather and the time of day, so the grid needs other sources, storage",
      "   (batteries, pumped hydro) or demand that can shift in time to cover calm or dark periods.",
      "2. Grid and land: good sites are often far from cities, which calls for new transmission lines, and large",
      "   farms need space and permits that can take years.",
      "3. Materials: panels, turbines and batteries need minerals whose mining and supply chains raise their own",
      "   environmental and political questions.",
      "",
      "So most energy plans combine wind and solar with storage, stronger grids and some dispatchable power, rather",
      "than relying on them alone.",
    ].join("\n"),
  },
];
