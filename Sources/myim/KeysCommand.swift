import ArgumentParser
import Foundation
import MyIMTopology

/// `myim keys`: the cluster's key directory.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Manage the cluster's identity keys, token-signing key, CA and TLS certificates.",
        subcommands: [Initialize.self]
    )

    /// `myim keys init`: creates what is missing, keeps what exists (unless --force) and
    /// prints one line per key with its SHA-256 fingerprint.
    struct Initialize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create every key the topology needs in its key directory.",
            discussion: """
                Identity keys (RSA-2048 or Ed25519 per node), the Ed25519 token-signing key, a \
                P-256 cluster CA and a leaf certificate per node for server-to-server mutual TLS. \
                Existing keys are kept; --force replaces them all, which breaks every client \
                that pinned an old identity key.
                """
        )

        @Option(name: .long, help: "The topology file.")
        var topology: String = "topology.yaml"

        @Flag(name: .long, help: "Replace existing keys and certificates.")
        var force = false

        func run() throws {
            let loaded: Topology
            let reports: [KeyReport]
            do {
                loaded = try Topology.load(path: topology)
                reports = try ClusterKeys.initialize(for: loaded, force: force)
            } catch {
                // TopologyError and KeyError already name the file, the key and the fix.
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode.failure
            }
            print("keys in \(loaded.keysDirectory)")
            let nameWidth = reports.map(\.name.count).max() ?? 0
            let kindWidth = reports.map(\.kind.count).max() ?? 0
            for report in reports {
                let name = report.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                let kind = report.kind.padding(toLength: kindWidth, withPad: " ", startingAt: 0)
                print("\(name)  \(kind)  \(report.fingerprint)  \(report.created ? "created" : "kept")")
            }
        }
    }
}
