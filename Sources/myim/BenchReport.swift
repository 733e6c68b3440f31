import Foundation

/// How `myim bench` commands print their figures: aligned rows for people, one JSON line per
/// phase or step for scripts (bench/compare.sh picks them out by their `{"bench":"<name>"` prefix).
enum BenchReport {
    /// `value` as one JSON line with sorted keys, `"bench": name` first.
    static func printJSON(_ value: some Encodable, bench name: String) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(value) else { return }
        let text = String(decoding: data, as: UTF8.self)
        let field = "\"bench\":\"\(name)\","
        print("{" + field + text.dropFirst().replacingOccurrences(of: field, with: ""))
    }

    /// An indented row: `name` padded to `nameWidth`, `value` right-aligned in `valueWidth`.
    static func printRow(_ name: String, _ value: String, nameWidth: Int, valueWidth: Int) {
        print("  " + name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + String(repeating: " ", count: max(0, valueWidth - value.count)) + value)
    }
}
