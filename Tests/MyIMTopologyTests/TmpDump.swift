import Foundation
import MyIMTopology
import Testing
@Test func tmpDump() throws {
    let yaml = try String(contentsOfFile: defaultTopologyPath, encoding: .utf8)
    let t = try Topology.parse(yaml: yaml, baseDirectory: "/tmp/x/dump", file: "topology.yaml")
    for r in try ClusterKeys.initialize(for: t) { print("ROW", r.name, r.kind, r.fingerprint, r.created) }
}
