/** memdrain as a library: placement, pool model and store, the wire protocol, and the application client. */
export * from './core/errors.js'
export * from './core/placement/index.js'
export * from './core/pool/model.js'
export { parsePoolText, validatePool } from './core/pool/validate.js'
export { FilePoolStore, InlinePoolStore, type PoolStore, type PoolSnapshot } from './core/pool/store.js'
export { resolvePoolStore } from './core/pool/resolve.js'
export { poolPlacement, locateKey, type PoolPlacement, type KeyLocation } from './core/pool/placement.js'
export * from './core/client/index.js'
