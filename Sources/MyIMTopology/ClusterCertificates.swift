import Crypto
import Foundation
import SwiftASN1
import X509

/// The cluster CA and the leaf certificates for server-to-server mutual TLS.
enum ClusterCertificates {
    /// Ten years: the CA outlives any deployment that does not rotate it on purpose.
    static let caLifetime: TimeInterval = 10 * 365 * 86_400
    /// 825 days, the longest leaf lifetime common TLS stacks accept.
    static let leafLifetime: TimeInterval = 825 * 86_400
    /// Certificates start a little in the past so that peers with slow clocks accept them.
    static let backdate: TimeInterval = 300

    static func makeCA(cluster: String, key: P256.Signing.PrivateKey, now: Date) throws -> Certificate {
        let name = try DistinguishedName {
            OrganizationName("MyIM")
            CommonName("\(cluster) cluster CA")
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now - backdate,
            notValidAfter: now + caLifetime,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key)
        )
    }

    static func makeLeaf(
        node: String,
        cluster: String,
        host: String,
        key: P256.Signing.PrivateKey,
        ca: Certificate,
        caKey: P256.Signing.PrivateKey,
        now: Date
    ) throws -> Certificate {
        let subject = try DistinguishedName {
            OrganizationName("MyIM")
            OrganizationalUnitName(cluster)
            CommonName(node)
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        let caKeyIdentifier = try ca.extensions.subjectKeyIdentifier?.keyIdentifier
            ?? SubjectKeyIdentifier(hash: ca.publicKey).keyIdentifier
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now - backdate,
            notValidAfter: min(now + leafLifetime, ca.notValidAfter),
            issuer: ca.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(subjectAlternativeNames(node: node, host: host))
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: caKeyIdentifier)
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey)
        )
    }

    /// The node name as a DNS name, plus the listen host as an IP address or DNS name
    /// (a wildcard listen address names no one and is left out).
    static func subjectAlternativeNames(node: String, host: String) -> [GeneralName] {
        var names: [GeneralName] = [.dnsName(node)]
        let unspecified = HostPort(host: host, port: 0).isUnspecified
        if let bytes = IPAddress.bytes(host) {
            if !unspecified { names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...]))) }
        } else if host.lowercased() != node {
            names.append(.dnsName(host.lowercased()))
        }
        return names
    }

    /// Why an existing leaf must be reissued, or nil when it can stay.
    static func staleness(
        of leaf: Certificate,
        key: P256.Signing.PrivateKey,
        node: String,
        host: String,
        ca: Certificate,
        now: Date
    ) -> String? {
        guard leaf.issuer == ca.subject, ca.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            return "not signed by the current CA"
        }
        guard leaf.publicKey == Certificate.PublicKey(key.publicKey) else {
            return "does not match its key file"
        }
        guard leaf.notValidBefore <= now, now < leaf.notValidAfter else {
            return "expired"
        }
        let expected = subjectAlternativeNames(node: node, host: host)
        guard let present = try? leaf.extensions.subjectAlternativeNames, Set(present.map { "\($0)" }) == Set(expected.map { "\($0)" }) else {
            return "names another host than the topology"
        }
        return nil
    }
}
