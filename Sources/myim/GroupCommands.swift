import ArgumentParser
import Foundation
import MyIMClient
import MyIMWire

/// `myim group create|invite|members|leave|remove|send|list`: group chat.
struct GroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group",
        abstract: "Create groups, manage their members and send to them.",
        discussion: """
            GROUP is a group's id, or its name among your groups (as myim group list shows them; a leading # forces \
            a name, so #42 is the group named 42). An unknown or ambiguous name is refused before anything is sent. \
            Group messages arrive with myim inbox and myim chat (/group GROUP). Every command exits with 1 and the \
            server's message when refused (e.g. 335 not a member, 338 not the group's owner).
            """,
        subcommands: [Create.self, Invite.self, Members.self, Leave.self, Remove.self, Send.self, List.self]
    )

    /// `myim group create NAME --members bob@alpha.example,carol@alpha.example` (4 → 15).
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create a group, with you as its owner.",
            discussion: """
                Prints the new group's id ({"group_id", "group_name"} with --json). Members who are online are told \
                (16). Refused with 332 naming the addresses that have no account, 336 for too many members, 337 for \
                an invalid name.
                """
        )

        @Argument(help: "The group's name.")
        var name: String

        @Option(help: ArgumentHelp(
            "The members besides you, comma-separated (or the option repeated); a bare name means your own domain.",
            valueName: "addresses"))
        var members: [String] = []

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        /// The addresses of `--members`, split at commas, without empty ones.
        var memberList: [String] {
            members.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }

        func validate() throws {
            guard !name.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("give the group's name") }
        }

        func run() async throws {
            do {
                let (name, members) = (name, memberList)
                let created = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    try await connection.createGroup(name: name, members: members)
                }
                if output.json {
                    output.printJSON(["group_id": created.groupID, "group_name": created.groupName])
                } else {
                    print("created #\(created.groupName): group id \(created.groupID)")
                }
            } catch {
                throw output.fail(error)
            }
        }
    }

    /// `myim group invite GROUP bob@alpha.example` (5 → 17).
    struct Invite: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "invite",
            abstract: "Add a user to a group you are in.",
            discussion: """
                Prints the members after ({"group_id", "group_name", "number", "members"} with --json). The user is \
                told (16), and the other members (47). Refused with 335 when you are not a member, 332 for an address \
                without an account, 339 when the user is a member already, 336 when the group is full.
                """
        )

        @OptionGroup var member: GroupMemberArguments

        func run() async throws {
            try await member.change { connection, user, group throws(ClientError) in try await connection.invite(user, to: group) }
        }
    }

    /// `myim group members GROUP` (7 → 17).
    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "members",
            abstract: "List a group's members.",
            discussion: """
                Prints the member count, then one address a line ({"group_id", "group_name", "number", "members"} \
                with --json). Refused with 335 when you are not a member.
                """
        )

        @Argument(help: "The group's id or name.")
        var group: String

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func run() async throws {
            do {
                let reference = group
                let (group, members) = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    let group = try connection.group(reference)
                    return (group, try await connection.members(of: group.groupID))
                }
                GroupCommand.show(members, of: group, output: output)
            } catch {
                throw output.fail(error)
            }
        }
    }

    /// `myim group leave GROUP` (45 → 47).
    struct Leave: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "leave",
            abstract: "Leave a group.",
            discussion: """
                The other members are told (47). Prints the group left ({"group_id", "group_name", "kind": "left", \
                "username", "time"} with --json). Refused with 335 when you are not a member.
                """
        )

        @Argument(help: "The group's id or name.")
        var group: String

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func run() async throws {
            do {
                let reference = group
                let notice = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    try await connection.leave(try connection.group(reference).groupID)
                }
                if output.json {
                    output.printJSON([
                        "group_id": notice.groupID, "group_name": notice.groupName, "kind": notice.kind.rawValue,
                        "username": notice.username, "time": notice.time,
                    ])
                } else {
                    print("left #\(notice.groupName) (group \(notice.groupID))")
                }
            } catch {
                throw output.fail(error)
            }
        }
    }

    /// `myim group remove GROUP bob@alpha.example` (46 → 17).
    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove",
            abstract: "Remove a member from a group you own.",
            discussion: """
                Prints the members after, as myim group members does. The removed member and the others are told \
                (47). Refused with 338 when you are not the group's owner, 335 when the user is not a member.
                """
        )

        @OptionGroup var member: GroupMemberArguments

        func run() async throws {
            try await member.change { connection, user, group throws(ClientError) in try await connection.remove(user, from: group) }
        }
    }

    /// `myim group send GROUP "text" [--image FILE]` (6 with a group target).
    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "send",
            abstract: "Send a text or an image to a group.",
            discussion: """
                Every member gets it, you included (your copy is kept in $MYIM_HOME/history/group-<id>.jsonl). With \
                --image the image is sent, then the text if one is given too. Prints each message's server id, \
                sequence number in the group and time (one JSON object per message with --json). Refused with 335 \
                when you are not a member.
                """
        )

        @Argument(help: "The group's id or name.")
        var group: String

        @OptionGroup var content: ChatContentOptions
        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func run() async throws {
            do {
                let contents = try content.contents()
                let qos = content.qualityOfService
                let (reference, output) = (group, output)
                try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    let group = try connection.group(reference)
                    for content in contents {
                        let accepted = try await connection.send(content, to: .group(group.groupID), qos: qos)
                        Self.report(accepted, to: group, content: content, qos: qos, endpoint: connection.endpoint, output: output)
                    }
                }
            } catch {
                throw output.fail(error)
            }
        }

        private static func report(
            _ accepted: ChatAccepted, to group: GroupEntry, content: ChatContent, qos: QoS, endpoint: EndpointCandidate,
            output: ClientOutputOptions
        ) {
            let kind = if case .image = content { "image" } else { "text" }
            if output.json {
                var object: [String: Any] = [
                    "group_id": group.groupID, "group_name": group.groupName, "kind": kind, "server_msg_id": accepted.serverMessageID,
                    "client_msg_id": accepted.clientMessageID, "time": accepted.time, "qos": qos.rawValue,
                    "endpoint": endpoint.address.description,
                ]
                if let seq = accepted.seq { object["seq"] = seq }
                output.printJSON(object)
            } else {
                let seq = accepted.seq.map { ", seq \($0)" } ?? ""
                print("""
                    sent \(kind) to #\(group.groupName) (group \(group.groupID)): server id \(accepted.serverMessageID)\(seq) \
                    at \(SessionSummary.iso8601(accepted.time))
                    """)
            }
        }
    }

    /// `myim group list`: the groups of the initial state (10).
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List your groups.",
            discussion: """
                Prints one group a line: its id and name ({"groups": [{"group_id", "group_name"}]} with --json), as the \
                server lists them when you connect.
                """
        )

        @OptionGroup var endpoint: MessagingEndpointOptions
        @OptionGroup var output: ClientOutputOptions

        func run() async throws {
            do {
                let groups = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                    connection.initialState.groups
                }
                if output.json {
                    output.printJSON(["groups": groups.map { ["group_id": $0.groupID, "group_name": $0.groupName] as [String: Any] }])
                } else if groups.isEmpty {
                    print("no groups yet")
                } else {
                    for group in groups { print("\(group.groupID)  \(group.groupName)") }
                }
            } catch {
                throw output.fail(error)
            }
        }
    }

    /// Prints a group's members (17): a heading and one address a line, or one JSON object.
    static func show(_ members: GroupMembers, of group: GroupEntry, output: ClientOutputOptions) {
        if output.json {
            output.printJSON([
                "group_id": members.groupID, "group_name": group.groupName, "number": members.number, "members": members.members,
            ])
        } else {
            print("#\(group.groupName) (group \(members.groupID)): \(members.number) member\(members.number == 1 ? "" : "s")")
            for member in members.members { print(member) }
        }
    }
}

/// GROUP and USER, with the endpoint and output options, for `myim group invite` and
/// `myim group remove`: both change a group's members and print the members after.
struct GroupMemberArguments: ParsableArguments {
    @Argument(help: "The group's id or name.")
    var group: String

    @Argument(help: "The user's address (a bare name means your own domain).")
    var user: String

    @OptionGroup var endpoint: MessagingEndpointOptions
    @OptionGroup var output: ClientOutputOptions

    func validate() throws {
        guard !user.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("give the user's address") }
    }

    /// Resolves GROUP, runs `operation` with the user and the group id, and prints the members it returns.
    func change(
        _ operation: @escaping (MessagingConnection, String, Int64) async throws(ClientError) -> GroupMembers
    ) async throws {
        do {
            let (reference, user) = (group, user)
            let (group, members) = try await withMessagingConnection(endpoint, output) { connection throws(ClientError) in
                let group = try connection.group(reference)
                return (group, try await operation(connection, user, group.groupID))
            }
            GroupCommand.show(members, of: group, output: output)
        } catch {
            throw output.fail(error)
        }
    }
}
