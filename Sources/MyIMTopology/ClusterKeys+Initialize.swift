import Crypto
import CryptoExtras
import Foundation
import MyIMSecureChannel
import X509

extension ClusterKeys {
    /// Creates every key the topology needs in its key directory: each node's identity key,
    /// the token-signing key, the cluster CA and each node's TLS leaf.
    ///
    /// Idempotent: existing keys are kept unless `force`. A leaf is reissued (without
    /// `force`) when the CA was created in this run, or when it no longer matches the CA, its
    /// key or the node's listen host: leaves are trusted through the CA, not pinned. An
    /// identity key of another kind than the topology asks for is an error without `force`,
    /// since replacing it breaks every client that pinned it.
    public static func initialize(for topology: Topology, force: Bool = false, now: Date = Date()) throws -> [KeyReport] {
        let keys = ClusterKeys(topology: topology)
        try KeyFiles.prepareDirectory(keys.directory)
        var reports: [KeyReport] = []

        for node in topology.allNodes {
            reports.append(try keys.ensureIdentityKey(for: node, force: force))
        }
        reports.append(try keys.ensureTokenSigningKey(force: force))

        let (ca, caKey, caReport) = try keys.ensureCA(cluster: topology.cluster, force: force, now: now)
        reports.append(caReport)
        for node in topology.allNodes {
            let host = topology.listenAddress(of: node.name)?.host ?? "127.0.0.1"
            reports.append(try keys.ensureLeaf(
                node: node.name,
                cluster: topology.cluster,
                host: host,
                ca: ca,
                caKey: caKey,
                reissue: force || caReport.created,
                now: now
            ))
        }
        return reports
    }

    private func ensureIdentityKey(for node: NodeDescriptor, force: Bool) throws -> KeyReport {
        let file = identityKeyPath(for: node.name)
        if !force, KeyFiles.exists(file) {
            let key = try Self.parseIdentityKey(try KeyFiles.readPrivate(file, hint: initHint), file: file)
            let kind = Self.identityKind(key)
            guard kind == node.identity else {
                throw KeyError(
                    .wrongKind,
                    file: file,
                    "holds an \(kind.rawValue) key but the topology gives \(node.name) an \(node.identity.rawValue) identity; "
                        + "rerun with --force to replace it (clients that pinned the old key will refuse the new one)"
                )
            }
            return Self.report(node.name, key, file, created: false)
        }
        let key: ServerIdentityKey
        let pem: String
        switch node.identity {
        case .rsa:
            let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
            key = try ServerIdentityKey(rsa: rsa)
            pem = rsa.pkcs8PEMRepresentation
        case .ed25519:
            let ed25519 = Curve25519.Signing.PrivateKey()
            key = ServerIdentityKey(ed25519: ed25519)
            pem = ed25519.pemRepresentation
        }
        try KeyFiles.write(pem, to: file)
        return Self.report(node.name, key, file, created: true)
    }

    private static func report(_ name: String, _ key: ServerIdentityKey, _ file: String, created: Bool) -> KeyReport {
        let kind = identityKind(key) == .rsa ? "identity rsa-2048" : "identity ed25519"
        return KeyReport(name: name, kind: kind, path: file, fingerprint: key.publicKey.fingerprint.description, created: created)
    }

    private func ensureTokenSigningKey(force: Bool) throws -> KeyReport {
        let file = tokenSigningKeyPath
        let key: Curve25519.Signing.PrivateKey
        let created: Bool
        if !force, KeyFiles.exists(file) {
            key = try tokenSigningKey()
            created = false
        } else {
            key = Curve25519.Signing.PrivateKey()
            try KeyFiles.write(key.pemRepresentation, to: file)
            created = true
        }
        return KeyReport(
            name: "token-signing",
            kind: "token-signing ed25519",
            path: file,
            fingerprint: KeyFingerprint(publicKeyDER: key.publicKey.derRepresentation).description,
            created: created
        )
    }

    private func ensureCA(
        cluster: String,
        force: Bool,
        now: Date
    ) throws -> (Certificate, P256.Signing.PrivateKey, KeyReport) {
        let certExists = KeyFiles.exists(caCertificatePath), keyExists = KeyFiles.exists(caKeyPath)
        if !force, certExists != keyExists {
            let (present, absent) = certExists ? (caCertificatePath, caKeyPath) : (caKeyPath, caCertificatePath)
            throw KeyError(.missing, file: absent, "is missing but \(present) exists; rerun with --force to make a new CA")
        }
        if !force, certExists, keyExists {
            let ca = try caCertificate()
            let key = try Self.readP256Key(caKeyPath, hint: initHint)
            guard ca.publicKey == Certificate.PublicKey(key.publicKey) else {
                throw KeyError(.certificate, file: caCertificatePath, "does not match \(caKeyPath); rerun with --force to make a new CA")
            }
            guard now < ca.notValidAfter else {
                throw KeyError(.certificate, file: caCertificatePath, "expired on \(ca.notValidAfter); rerun with --force to make a new CA")
            }
            return (ca, key, Self.caReport(ca, key, caCertificatePath, created: false))
        }
        let key = P256.Signing.PrivateKey()
        let ca = try ClusterCertificates.makeCA(cluster: cluster, key: key, now: now)
        try KeyFiles.write(key.pemRepresentation, to: caKeyPath)
        try KeyFiles.write(try ca.serializeAsPEM().pemString, to: caCertificatePath)
        return (ca, key, Self.caReport(ca, key, caCertificatePath, created: true))
    }

    private static func caReport(_ ca: Certificate, _ key: P256.Signing.PrivateKey, _ file: String, created: Bool) -> KeyReport {
        KeyReport(
            name: "ca",
            kind: "ca p-256",
            path: file,
            fingerprint: KeyFingerprint(publicKeyDER: key.publicKey.derRepresentation).description,
            created: created
        )
    }

    private func ensureLeaf(
        node: String,
        cluster: String,
        host: String,
        ca: Certificate,
        caKey: P256.Signing.PrivateKey,
        reissue: Bool,
        now: Date
    ) throws -> KeyReport {
        let certFile = certificatePath(for: node)
        let keyFile = certificateKeyPath(for: node)
        if !reissue, KeyFiles.exists(certFile), KeyFiles.exists(keyFile) {
            let leaf = try certificate(for: node)
            let key = try certificatePrivateKey(for: node)
            if ClusterCertificates.staleness(of: leaf, key: key, node: node, host: host, ca: ca, now: now) == nil {
                return KeyReport(
                    name: node,
                    kind: "tls-cert p-256",
                    path: certFile,
                    fingerprint: KeyFingerprint(publicKeyDER: key.publicKey.derRepresentation).description,
                    created: false
                )
            }
        }
        let key = P256.Signing.PrivateKey()
        let leaf = try ClusterCertificates.makeLeaf(
            node: node, cluster: cluster, host: host, key: key, ca: ca, caKey: caKey, now: now
        )
        try KeyFiles.write(key.pemRepresentation, to: keyFile)
        try KeyFiles.write(try leaf.serializeAsPEM().pemString, to: certFile)
        return KeyReport(
            name: node,
            kind: "tls-cert p-256",
            path: certFile,
            fingerprint: KeyFingerprint(publicKeyDER: key.publicKey.derRepresentation).description,
            created: true
        )
    }
}
