import ArgumentParser
import Foundation
import MyIMTopology

/// `myim topology`: files derived from topology.yaml.
struct TopologyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology",
        abstract: "Generate files from the cluster's topology.",
        subcommands: [Compose.self]
    )

    /// `myim topology compose`: docker/compose.yaml and docker/topology.yaml.
    struct Compose: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compose",
            abstract: "Write a docker compose file for the topology, and the topology its containers read.",
            discussion: """
                Writes the compose file (--output) and, beside it, topology.yaml: the same cluster \
                seen from inside the compose network (each node listens on <node>:<port>; the \
                login center and the endpoints advertise 127.0.0.1 and their ports are published \
                on the host's 127.0.0.1). The image is built from docker/Dockerfile with the \
                topology file's directory as the build context. Both files are generated: edit \
                the topology and run this command again rather than editing them.
                """
        )

        @Option(help: "The cluster's topology file.")
        var topology: String = "topology.yaml"

        @Option(help: "The compose file to write; topology.yaml is written beside it.")
        var output: String = "docker/compose.yaml"

        func run() throws {
            let cwd = FileManager.default.currentDirectoryPath
            let outputPath = Self.absolute(output, base: cwd)
            let outputDirectory = (outputPath as NSString).deletingLastPathComponent
            let topologyOutput = (outputDirectory as NSString).appendingPathComponent("topology.yaml")
            let sourcePath = Self.absolute(topology, base: cwd)
            guard sourcePath != topologyOutput else {
                throw ValidationError("--output \(output) would write the container topology over \(topology) itself; choose another directory")
            }
            let files: DockerCompose.Files
            do {
                let source = try Topology.load(path: topology)
                let context = Self.relativePath(from: outputDirectory, to: (sourcePath as NSString).deletingLastPathComponent)
                files = try DockerCompose.generate(
                    from: source,
                    sourceName: (topology as NSString).lastPathComponent,
                    buildContext: context
                )
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode.failure
            }
            do {
                try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
                try Data(files.compose.utf8).write(to: URL(fileURLWithPath: outputPath), options: .atomic)
                try Data(files.topology.utf8).write(to: URL(fileURLWithPath: topologyOutput), options: .atomic)
            } catch {
                FileHandle.standardError.write(Data("error: cannot write \(output): \(error.localizedDescription)\n".utf8))
                throw ExitCode.failure
            }
            print("wrote \(Self.display(outputPath, cwd: cwd)) and \(Self.display(topologyOutput, cwd: cwd))")
            print("run: docker compose -f \(Self.display(outputPath, cwd: cwd)) up --build")
        }

        static func absolute(_ path: String, base: String) -> String {
            let expanded = (path as NSString).expandingTildeInPath
            let joined = expanded.hasPrefix("/") ? expanded : (base as NSString).appendingPathComponent(expanded)
            return URL(fileURLWithPath: joined).standardizedFileURL.path
        }

        /// `target` relative to the directory `base` (both absolute): `..` for the parent.
        static func relativePath(from base: String, to target: String) -> String {
            let from = base.split(separator: "/")
            let to = target.split(separator: "/")
            var common = 0
            while common < from.count, common < to.count, from[common] == to[common] { common += 1 }
            let parts = Array(repeating: "..", count: from.count - common) + to[common...].map(String.init)
            return parts.isEmpty ? "." : parts.joined(separator: "/")
        }

        /// `path` relative to the working directory when it lies below it.
        static func display(_ path: String, cwd: String) -> String {
            let prefix = cwd.hasSuffix("/") ? cwd : cwd + "/"
            return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path
        }
    }
}
