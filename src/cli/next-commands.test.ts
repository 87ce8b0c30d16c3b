import { describe, expect, it } from "vitest";
import { cliInvocation, displayPath, formatNextCommands, shellWord } from "./next-commands.js";

describe("next commands", () => {
  it("are written the way the CLI was started", () => {
    const cwd = "/home/me/project";
    expect(cliInvocation(["node", "/home/me/project/dist/cli/cli.js"], { npm_lifecycle_event: "selfalign" }, cwd)).toBe(
      "npm run selfalign --",
    );
    expect(cliInvocation(["node", "/home/me/project/node_modules/.bin/selfalign"], {}, cwd, [])).toBe("npx selfalign");
    expect(cliInvocation(["node", "/usr/local/bin/selfalign"], {}, cwd, [])).toBe("selfalign");
    expect(cliInvocation(["node", "/home/me/project/dist/cli/cli.js"], {}, cwd, [])).toBe("node dist/cli/cli.js");
    expect(cliInvocation(["node", "/home/me/project/src/cli/cli.ts"], {}, cwd, ["--import", "tsx"])).toBe(
      "node --import tsx src/cli/cli.ts",
    );
    expect(cliInvocation(["node", "/opt/my tools/cli.js"], {}, cwd, [])).toBe("node '/opt/my tools/cli.js'");
  });

  it("quote what a shell would split, and shorten paths under the working folder", () => {
    expect(shellWord("runs/x/adapter.gguf")).toBe("runs/x/adapter.gguf");
    expect(shellWord("it's here")).toBe("'it'\\''s here'");
    expect(displayPath("/a/b/c.gguf", "/a")).toBe("b/c.gguf");
    expect(displayPath("/elsewhere/c.gguf", "/a")).toBe("/elsewhere/c.gguf");
  });

  it("name chat and serve with the base model and the adapter, and report with the run", () => {
    const text = formatNextCommands(
      {
        baseModel: "/w/models/base.gguf",
        adapter: "/w/runs/x/verbose-clone/adapter/adapter.gguf",
        runDir: "/w/runs/x",
      },
      "selfalign",
      "/w",
    );
    expect(text).toBe(
      [
        "Next:",
        "  selfalign chat --model models/base.gguf --adapter runs/x/verbose-clone/adapter/adapter.gguf",
        "  selfalign serve --model models/base.gguf --adapter runs/x/verbose-clone/adapter/adapter.gguf",
        "  selfalign report runs/x",
        "",
      ].join("\n"),
    );
    // A server-backed run without an adapter gets the report only; hf: URIs are kept as they are.
    expect(formatNextCommands({ runDir: "/w/runs/y" }, "selfalign", "/w")).toBe("Next:\n  selfalign report runs/y\n");
    expect(
      formatNextCommands({ baseModel: "hf:o/r/f.gguf", adapter: "/w/a.gguf", runDir: "/w/r" }, "selfalign", "/w"),
    ).toContain("chat --model hf:o/r/f.gguf --adapter a.gguf");
  });
});
