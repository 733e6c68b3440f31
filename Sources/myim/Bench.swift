import ArgumentParser

/// `myim bench`: measurements that print figures. Nothing here asserts a speed.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure MyIM's costs and print the figures.",
        subcommands: [BenchCore.self, BenchLogins.self, BenchMessages.self, BenchGroup.self, BenchPairs.self, BenchIdle.self]
    )
}
