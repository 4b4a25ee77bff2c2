# Sets keys through Ruby Dalli (scripts/record-vectors.ts).
# stdin: {"servers": ["h:p", ...], "weights": [...] | null, "keys": [...]}; stdout: {"failed": n}
require 'dalli'
require 'json'
require 'logger'

Dalli.logger = Logger.new(nil)
d = JSON.parse($stdin.read)
servers = d['servers'].each_with_index.map { |s, i| d['weights'] ? "#{s}:#{d['weights'][i]}" : s }
c = Dalli::Client.new(servers, compress: false)
failed = 0
d['keys'].each do |k|
  begin
    failed += 1 unless c.set(k, '1', 0, raw: true)
  rescue StandardError
    failed += 1
  end
end
puts JSON.generate({ failed: failed })
