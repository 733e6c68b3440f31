import Foundation
import Synchronization

/// The child processes of `myim cluster up`: started with their output prefixed by their
/// name, stopped together (SIGTERM one after the other, SIGKILL after 15 s).
final class Supervisor: Sendable {
    private struct Child: Sendable {
        let name: String
        let process: Process
    }

    private let children = Mutex<[Child]>([])
    private let exits = AsyncStream<String>.makeStream()

    /// Starts `executable` with `arguments`; its stdout and stderr lines are printed as `name | line`.
    /// Returns the child's process id.
    @discardableResult
    func start(name: String, executable: String, arguments: [String], quiet: Bool = false) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let prefix = name.padding(toLength: max(name.count, 13), withPad: " ", startingAt: 0) + " | "
        let buffer = Mutex<[UInt8]>([])
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            let lines: [String] = buffer.withLock { pending in
                pending.append(contentsOf: data)
                var lines: [String] = []
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
                return lines
            }
            FileHandle.standardOutput.write(Data(lines.map { prefix + $0 + "\n" }.joined().utf8))
        }
        let continuation = exits.continuation
        process.terminationHandler = { process in
            continuation.yield("\(name) exited with status \(process.terminationStatus)")
        }
        try process.run()
        children.withLock { $0.append(Child(name: name, process: process)) }
        if !quiet { say("cluster: started \(name) (pid \(process.processIdentifier))") }
        return process.processIdentifier
    }

    /// Whether every child started is still running.
    var allRunning: Bool { children.withLock { $0.allSatisfy(\.process.isRunning) } }

    /// Waits for the first child to exit or the first termination signal.
    func firstExitOrSignal() async -> String {
        await withTaskGroup(of: String.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    switch terminationSignal.load(ordering: .relaxed) {
                    case SIGINT: return "interrupted"
                    case SIGTERM: return "terminated"
                    default: try? await Task.sleep(for: .milliseconds(100))
                    }
                }
                return "cancelled"
            }
            group.addTask {
                for await exit in self.exits.stream { return exit }
                return "children ended"
            }
            let first = await group.next() ?? "stopped"
            group.cancelAll()
            return first
        }
    }

    /// Stops every child still running (but `spared`), newest first (endpoints, then centers,
    /// then the login center), one after the other: SIGTERM, which makes a role drain (see
    /// `runRole`), then SIGKILL if it is still running after `grace`.
    func stopAll(except spared: Set<String> = [], grace: TimeInterval = 15) {
        let running = children.withLock { $0.reversed().filter { $0.process.isRunning && !spared.contains($0.name) } }
        for child in running {
            kill(child.process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(grace)
            while child.process.isRunning, Date() < deadline { usleep(20_000) }
            if child.process.isRunning {
                say("cluster: \(child.name) did not stop within \(Int(grace)) s; killing it")
                kill(child.process.processIdentifier, SIGKILL)
            }
            child.process.waitUntilExit()
        }
    }
}

/// One line to standard output, unbuffered, so that it keeps its place among the children's lines.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
