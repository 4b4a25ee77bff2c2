/**
 * The item rules every writer shares (engine transfer, catch-up, the application library): one
 * TTL rule and one item-size headroom, so a key copied by any of them expires and fits alike.
 */

/** 30 days: memcached reads a larger expiry as an absolute Unix time. */
export const RELATIVE_TTL_LIMIT = 2_592_000

/**
 * The `T` to send for an item with `ttl` remaining seconds (-1 = no expiry): relative up to 30
 * days, else absolute on the destination's clock (`clockOffset`: its clock minus ours, seconds).
 * A remaining TTL of 0 means "expires within the second": T0 would make it immortal, so 1.
 */
export function expiryToken(ttl: number, clockOffset = 0, nowSeconds?: number): number {
  if (ttl < 0) return 0
  if (ttl === 0) return 1
  // The clock is read only for the rare absolute case (this runs once per key on the hot path).
  return ttl <= RELATIVE_TTL_LIMIT ? ttl : (nowSeconds ?? Math.floor(Date.now() / 1000)) + clockOffset + ttl
}

/** Bytes memcached's item header and key take beside the value: a value fits when value + this ≤ item_size_max. */
export const ITEM_HEADROOM = 512

/** Whether a value of `valueBytes` fits a server whose item_size_max is `itemSizeMax`. */
export function valueFits(valueBytes: number, itemSizeMax: number): boolean {
  return valueBytes + ITEM_HEADROOM <= itemSizeMax
}
