/**
 * Log lines on stderr. Off a terminal (a file, journald, a CI log) each line starts with an ISO
 * timestamp, so a long job's log says when each thing happened; on a terminal people see the
 * clock themselves and the line stays short.
 */
export function logLine(text: string): void {
  const stamp = process.stderr.isTTY === true ? '' : `${new Date().toISOString()} `
  process.stderr.write(text.split('\n').map((l) => stamp + l).join('\n') + '\n')
}
