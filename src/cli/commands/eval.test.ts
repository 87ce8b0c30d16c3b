import { describe, expect, it } from "vitest";
import { ConfigError } from "../../errors/index.js";
import { mtBenchCategoryTemperatures, parseCategoryTemperatures } from "../../eval/judges/generate-answers.js";

describe("selfalign eval flags", () => {
  it("reads --category-temperatures as the MT-bench preset or a JSON object", () => {
    expect(parseCategoryTemperatures("mt-bench")).toEqual(mtBenchCategoryTemperatures);
    expect(parseCategoryTemperatures('{"writing": 0.9, "math": 0}')).toEqual({ writing: 0.9, math: 0 });
    for (const bad of ["mtbench", "[0.7]", '{"math": -1}', '{"math": "zero"}'])
      expect(() => parseCategoryTemperatures(bad)).toThrow(ConfigError);
  });
});
