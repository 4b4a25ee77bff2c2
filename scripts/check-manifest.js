// Fails when the oclif.manifest.json that was there before the build differs from the one the
// build generated: a stale manifest hides new commands and flags. Usage (scripts/test.sh):
//   cp oclif.manifest.json OLD && npm run build && node scripts/check-manifest.js OLD
import { readFileSync } from 'node:fs'

const [before] = process.argv.slice(2)
if (before === undefined) {
  console.error('usage: node scripts/check-manifest.js <manifest copied before the build>')
  process.exit(2)
}
const normalize = (file) => {
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8'))
    delete doc.version
    return JSON.stringify(doc)
  } catch {
    return ''
  }
}
if (normalize(before) !== normalize('oclif.manifest.json')) {
  console.error('oclif.manifest.json was stale (the build has now regenerated it): commit oclif.manifest.json')
  process.exit(1)
}
console.error('oclif.manifest.json is fresh')
