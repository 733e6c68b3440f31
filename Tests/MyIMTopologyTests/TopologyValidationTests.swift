import MyIMTopology
import Testing

@Suite("Topology validation: every error names the file, the key and the fault")
struct TopologyValidationTests {
    @Test("the minimal topology is valid")
    func minimalIsValid() {
        #expect(topologyError(minimalYAML) == nil)
    }

    @Test("an unknown top-level key is named")
    func unknownTopLevelKey() throws {
        let error = try #require(topologyError(minimalYAML + "\nredis_url: redis://x\n"))
        #expect(error.file == "test.yaml")
        #expect(error.key == "redis_url")
        #expect(error.message.contains("unknown key"))
        #expect(error.description.hasPrefix("test.yaml: redis_url: unknown key"))
    }

    @Test("an unknown nested key is named with its path and a suggestion")
    func unknownNestedKey() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "      listen: 127.0.0.1:7100", with: "      listen: 127.0.0.1:7100\n      Identity: rsa")
        let error = try #require(topologyError(yaml))
        #expect(error.key == "domains[0].center.Identity")
        #expect(error.message.contains("did you mean `identity`"))
        #expect(error.message.contains("line 10"))
    }

    @Test("a node name used twice")
    func duplicateName() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "name: alpha-ep2", with: "name: alpha-ep1")
        let error = try #require(topologyError(yaml))
        #expect(error.file == "test.yaml")
        #expect(error.key == "domains[0].endpoints[1].name")
        #expect(error.message.contains("already used by domains[0].endpoints[0].name"))
    }

    @Test("a name shared between the login center and an endpoint")
    func duplicateNameAcrossRoles() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "name: alpha-ep2", with: "name: login")
        let error = try #require(topologyError(yaml))
        #expect(error.key == "domains[0].endpoints[1].name")
        #expect(error.message.contains("loginCenter.name"))
    }

    @Test("bad ports", arguments: [
        ("127.0.0.1:70000", "not a port"),
        ("127.0.0.1:0", "out of range"),
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:http", "not a port"),
    ])
    func badPort(listen: String, fault: String) throws {
        let yaml = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7202", with: "listen: \(listen)")
        let error = try #require(topologyError(yaml))
        #expect(error.key == "domains[0].endpoints[1].listen")
        #expect(error.message.contains(fault), "\(error)")
    }

    @Test("an unquoted IPv6 address says to quote it")
    func unquotedIPv6() throws {
        let unquoted = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7202", with: "listen: [::1]:7202")
        let syntax = try #require(topologyError(unquoted))
        #expect(syntax.key == "(yaml)")
        #expect(syntax.message.contains("line 14"))
        #expect(syntax.message.contains("quote IPv6"))

        let list = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7202", with: "listen: [\"::1\", 7202]")
        let error = try #require(topologyError(list))
        #expect(error.key == "domains[0].endpoints[1].listen")
        #expect(error.message.contains("quote"))

        let quoted = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7202", with: "listen: \"[::1]:7202\"")
        #expect(topologyError(quoted) == nil)
    }

    @Test("missing or empty domains")
    func missingDomains() throws {
        let noDomains = "cluster: test\n"
        let missing = try #require(topologyError(noDomains))
        #expect(missing.file == "test.yaml")
        #expect(missing.key == "domains")
        #expect(missing.message.contains("missing"))

        let empty = try #require(topologyError("cluster: test\ndomains: []\n"))
        #expect(empty.key == "domains")
        #expect(empty.message.contains("empty"))
    }

    @Test("a domain without endpoints")
    func noEndpoints() throws {
        let yaml = """
            cluster: test
            domains:
              - name: alpha.example
                center: {name: c, listen: "127.0.0.1:7100"}
                endpoints: []
            """
        let error = try #require(topologyError(yaml))
        #expect(error.key == "domains[0].endpoints")
        #expect(error.message.contains("at least one endpoint"))
    }

    @Test("two listeners on one host:port")
    func duplicateListen() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7202", with: "listen: 127.0.0.1:7100")
        let error = try #require(topologyError(yaml))
        #expect(error.file == "test.yaml")
        #expect(error.key == "domains[0].endpoints[1].listen")
        #expect(error.message.contains("already taken by domains[0].center.listen"))
    }

    @Test("a wildcard listener clashes with any host on its port")
    func wildcardClash() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7202", with: "listen: 0.0.0.0:7201\n        advertise: 10.0.0.2:7201")
        let error = try #require(topologyError(yaml))
        #expect(error.key == "domains[0].endpoints[1].listen")
    }

    @Test("a metrics port that collides with a listener")
    func metricsClash() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7000", with: "listen: 127.0.0.1:7000\n  metrics: 127.0.0.1:7201")
        let error = try #require(topologyError(yaml))
        #expect(error.key == "domains[0].endpoints[0].listen")
        #expect(error.message.contains("loginCenter.metrics"))
    }

    @Test("a wildcard listen address without advertise")
    func wildcardAdvertise() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7000", with: "listen: 0.0.0.0:7000")
        let error = try #require(topologyError(yaml))
        #expect(error.key == "loginCenter.advertise")
    }

    @Test("bad names", arguments: [
        ("name: alpha-ep1", "name: Alpha-EP1", "domains[0].endpoints[0].name"),
        ("name: alpha-ep1", "name: -ep1", "domains[0].endpoints[0].name"),
        ("name: alpha-ep1", "name: \(String(repeating: "e", count: 64))", "domains[0].endpoints[0].name"),
        ("name: alpha.example", "name: Alpha.Example", "domains[0].name"),
        ("name: alpha.example", "name: alpha..example", "domains[0].name"),
        ("cluster: test", "cluster: my_cluster", "cluster"),
    ])
    func badName(from: String, to: String, key: String) throws {
        let error = try #require(topologyError(minimalYAML.replacingOccurrences(of: from, with: to)))
        #expect(error.key == key, "\(error)")
    }

    @Test("priority and token lifetime ranges")
    func ranges() throws {
        let priority = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7202", with: "listen: 127.0.0.1:7202\n        priority: 1001")
        let priorityError = try #require(topologyError(priority))
        #expect(priorityError.key == "domains[0].endpoints[1].priority")
        #expect(priorityError.message.contains("0–1000"))

        for lifetime in ["59", "86401", "soon"] {
            let yaml = minimalYAML.replacingOccurrences(of: "name: login", with: "name: login\n  tokenLifetimeSeconds: \(lifetime)")
            let error = try #require(topologyError(yaml))
            #expect(error.key == "loginCenter.tokenLifetimeSeconds", "\(error)")
        }
    }

    @Test("presence timing: the TTL's range, and at least three heartbeats per TTL", arguments: [
        ("presence:\n  ttlSeconds: 2", "presence.ttlSeconds"),
        ("presence:\n  ttlSeconds: 3601", "presence.ttlSeconds"),
        ("presence:\n  ttlSeconds: 30\n  heartbeatSeconds: 11", "presence.heartbeatSeconds"),
        ("presence:\n  heartbeatSeconds: 0", "presence.heartbeatSeconds"),
        ("presence:\n  ttl: 30", "presence.ttl"),
    ])
    func presenceTiming(lines: String, key: String) throws {
        let error = try #require(topologyError(minimalYAML + "\n" + lines + "\n"))
        #expect(error.key == key, "\(error)")
    }

    @Test func presenceTimingIsReadWithDefaults() throws {
        let defaults = try Topology.parse(yaml: minimalYAML, baseDirectory: "/tmp/base", file: "test.yaml")
        #expect(defaults.presence == PresenceTiming(ttlSeconds: 30, heartbeatSeconds: 10))
        let short = try Topology.parse(
            yaml: minimalYAML + "\npresence:\n  ttlSeconds: 6\n  heartbeatSeconds: 2\n", baseDirectory: "/tmp/base", file: "test.yaml")
        #expect(short.presence == PresenceTiming(ttlSeconds: 6, heartbeatSeconds: 2))
    }

    @Test("enumerations and other values", arguments: [
        ("links: mtls", "links"),
        ("logLevel: loud", "logLevel"),
        ("redis: http://127.0.0.1:6379", "redis"),
    ])
    func badValue(line: String, key: String) throws {
        let error = try #require(topologyError(minimalYAML + "\n" + line + "\n"))
        #expect(error.key == key, "\(error)")
    }

    @Test("a bad identity kind")
    func badIdentity() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "listen: 127.0.0.1:7201", with: "listen: 127.0.0.1:7201\n        identity: dsa")
        let error = try #require(topologyError(yaml))
        #expect(error.key == "domains[0].endpoints[0].identity")
        #expect(error.message.contains("`rsa` or `ed25519`"))
    }

    @Test("missing required keys and wrong shapes")
    func shapes() throws {
        let noListen = minimalYAML.replacingOccurrences(of: "      listen: 127.0.0.1:7100\n", with: "")
        #expect(topologyError(noListen)?.key == "domains[0].center.listen")
        let noCluster = minimalYAML.replacingOccurrences(of: "cluster: test\n", with: "")
        #expect(topologyError(noCluster)?.key == "cluster")
        #expect(topologyError("- just\n- a list\n")?.key == "(document)")
        #expect(topologyError("")?.key == "(file)")
        let scalarDomains = try #require(topologyError("cluster: test\ndomains: alpha.example\n"))
        #expect(scalarDomains.key == "domains")
        #expect(scalarDomains.message.contains("must be a list"))
    }

    @Test("YAML syntax errors and duplicate keys carry the line")
    func yamlErrors() throws {
        let broken = try #require(topologyError("cluster: [unclosed\n"))
        #expect(broken.file == "test.yaml")
        #expect(broken.message.contains("line"))
        let duplicate = try #require(topologyError(minimalYAML + "\ncluster: again\n"))
        #expect(duplicate.message.contains("`cluster`"))
    }
}
