/**
 * The bench's rounds (bench/runs.ts): the first tool rotates from round to
 * round, so that no tool always runs first on a cold machine, and peak RSS
 * and CPU time are read from /usr/bin/time's last line.
 */
import { describe, expect, it } from "vitest";
import { parseTimeOutput, rotation } from "../../bench/runs.ts";

describe("rotation", () => {
  it("starts round 1 with the first tool and each later round with the next one", () => {
    const tools = ["coffer", "restic", "borg"];
    expect(rotation(tools, 1)).toEqual(["coffer", "restic", "borg"]);
    expect(rotation(tools, 2)).toEqual(["restic", "borg", "coffer"]);
    expect(rotation(tools, 3)).toEqual(["borg", "coffer", "restic"]);
    expect(rotation(tools, 4)).toEqual(["coffer", "restic", "borg"]);
  });

  it("runs every tool once a round, whatever the count", () => {
    for (let n = 1; n <= 4; n++) {
      const tools = Array.from({ length: n }, (_, i) => i);
      for (let round = 1; round <= 6; round++) expect([...rotation(tools, round)].sort()).toEqual(tools);
    }
    expect(rotation([], 2)).toEqual([]);
  });
});

describe("parseTimeOutput", () => {
  it("reads peak RSS (KiB, given in bytes) and user + sys CPU seconds", () => {
    expect(parseTimeOutput("1.23 45678 0.50 0.25\n")).toEqual({ rss: 45678 * 1024, cpu: 0.75 });
  });

  it("reads the last line, after a note of the command's exit status", () => {
    expect(parseTimeOutput("Command exited with non-zero status 3\n2.00 1000 1.00 0.50\n")).toEqual({ rss: 1000 * 1024, cpu: 1.5 });
  });

  it("gives nothing for a line that is not the four figures", () => {
    expect(parseTimeOutput("")).toBeNull();
    expect(parseTimeOutput("Command terminated by signal 9\n")).toBeNull();
    expect(parseTimeOutput("1.0 100 0.5\n")).toBeNull();
  });
});
