import Foundation
import MyIMCenter
import MyIMWire
import Testing

/// The center's SQLite store on a real file.
@Suite("Center store")
struct CenterStoreTests {
    @Test func aBurstOfSendsSharesCommitsAndStoresEachOnce() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try CenterStore(path: directory.appendingPathComponent("center.sqlite").path)
        let delivery = { @Sendable (sender: String, id: String) in
            { @Sendable (serverID: Int64, time: Int64) in
                ChatDelivery(
                    kind: .user, time: time, senderID: 1, senderName: sender, targetID: 2, targetName: "bob@alpha.example",
                    content: .text(id), serverMessageID: serverID, clientMessageID: id, qos: .atLeastOnce)
            }
        }
        // 200 sends at once, each sent twice (a client retrying): 200 messages, 400 answers.
        let outcomes = try await withThrowingTaskGroup(of: (String, AcceptOutcome).self) { group in
            for index in 0..<400 {
                let id = "c\(index % 200)"
                group.addTask {
                    let outcome = try await store.accept(
                        sender: "alice@alpha.example", clientMessageID: id, recipient: "bob@alpha.example", now: 1_000,
                        makeDelivery: delivery("alice@alpha.example", id))
                    return (id, outcome)
                }
            }
            var all: [(String, AcceptOutcome)] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }
        var serverIDs: [String: Set<Int64>] = [:]
        var stored = 0
        for (id, outcome) in outcomes {
            switch outcome {
            case .stored(let serverID, _):
                stored += 1
                serverIDs[id, default: []].insert(serverID)
            case .duplicate(let serverID, _):
                serverIDs[id, default: []].insert(serverID)
            }
        }
        #expect(stored == 200, "each client id stored once")
        #expect(serverIDs.count == 200 && serverIDs.values.allSatisfy { $0.count == 1 }, "a retry gets the original's server id")
        #expect(try await store.pendingCount() == 200)
        let pending = try await store.pending(for: "bob@alpha.example", limit: 1000)
        #expect(Set(pending.map(\.clientMessageID)).count == 200)
        let transactions = await store.acceptTransactions
        #expect(transactions < 400, "400 concurrent accepts took \(transactions) transactions")
    }
}
