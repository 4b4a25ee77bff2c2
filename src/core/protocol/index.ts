export { DEFAULT_PORT, formatAddress, parseAddress, type ServerAddress } from './address.js'
export {
  compareVersions,
  EN,
  ERR,
  EX,
  HD,
  ME,
  META_CONNECTION_DEFAULTS,
  MetaConnection,
  MetaReply,
  MN,
  NF,
  NS,
  statusName,
  VA,
  type MetaConnectionOptions,
} from './connection.js'
export { isServerError, MIN_MEMCACHED_VERSION, ServerError, type ServerErrorCode } from './errors.js'
export {
  keyEncoding,
  keyEncodingAt,
  keyToken,
  keyTokenLength,
  MAX_BASE64_KEY_LENGTH,
  MAX_KEY_LENGTH,
  unaddressableKey,
  uriDecodeInto,
  writeKeyToken,
  type KeyEncoding,
} from './keys.js'
export { METADUMP_DEFAULTS, type DumpEntry, type MetadumpOptions, type MetadumpResult } from './metadump.js'
export { MetaPayload, writeInt, type MetaVerb } from './payload.js'
export { expiryToken, ITEM_HEADROOM, RELATIVE_TTL_LIMIT, valueFits } from './ttl.js'
export {
  copyItemCas,
  DEFAULT_ITEM_SIZE_MAX,
  expiring,
  flushNode,
  itemCas,
  itemFlags,
  itemTtl,
  limitsFromStats,
  MemcachedNode,
  NodeBatch,
  readLimits,
  storeMode,
  type CasDeleteResult,
  type ItemForMove,
  type NodeLimits,
  type StoreMode,
  type StoreResult,
} from './node.js'
