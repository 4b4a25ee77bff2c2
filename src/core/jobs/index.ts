/** The jobs an operator runs (see README.md). */
export { checkDrainable, drainChange, planDrain, runDrain, type DrainEvent, type DrainOptions, type DrainPlan, type DrainResult } from './drain.js'
export { abortRebalance, rebalanceChange, runRebalance, type AbortResult, type RebalanceEvent, type RebalanceOptions, type RebalancePlan, type RebalanceResult } from './rebalance.js'
export { runWarm } from './warm.js'
export { runMirror } from './mirror.js'
