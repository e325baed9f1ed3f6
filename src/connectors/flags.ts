/**
 * Kloset location flags (docs/WIRE.md, "Location flags"): the same bit
 * values on the plugin wire.
 */
export const LocationFlag = {
  LOCALFS: 1,
  FILE: 2,
  STREAM: 4,
  NEEDACK: 8,
  NOMERGE: 16,
  EXPORTXATTR: 32,
} as const;

/** Store resources (docs/WIRE.md, "Store": StorageResource). */
export const Resource = {
  PACKFILE: 1,
  STATE: 2,
  LOCK: 3,
} as const;
export type Resource = (typeof Resource)[keyof typeof Resource];

export function resourceName(r: Resource): string {
  switch (r) {
    case Resource.PACKFILE:
      return "packfile";
    case Resource.STATE:
      return "state";
    case Resource.LOCK:
      return "lock";
  }
}

/** Store capabilities (docs/WIRE.md, "Store": ModeResponse). */
export const StoreMode = { WRITE: 2, READ: 4 } as const;
