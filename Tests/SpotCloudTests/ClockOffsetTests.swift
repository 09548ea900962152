import Foundation
import SpotCloud
import Testing

@Suite struct ClockOffsetTests {
    static func header(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.string(from: date)
    }

    /// A clock within the header's second stays uncorrected; ten minutes off either way is
    /// learned from one answer, and a later answer within the resolution changes nothing.
    @Test func learnsAnOffsetBeyondTheHeadersResolutionOnly() {
        let clock = ClockOffset()
        let sent = Date()
        let received = sent.addingTimeInterval(0.04)
        #expect(!clock.observe(header: Self.header(received), sent: sent, received: received))
        #expect(clock.offset == 0)

        #expect(clock.observe(header: Self.header(received.addingTimeInterval(600)), sent: sent, received: received))
        #expect(abs(clock.offset - 600) <= 1, "\(clock.offset)")
        #expect(abs(clock.now().timeIntervalSince(Date()) - 600) <= 1.5)
        #expect(!clock.observe(header: Self.header(received.addingTimeInterval(600.3)), sent: sent, received: received))

        #expect(clock.observe(header: Self.header(received.addingTimeInterval(-600)), sent: sent, received: received))
        #expect(abs(clock.offset + 600) <= 1, "\(clock.offset)")
        // the local clock put right again (NTP stepped it): back to no correction
        #expect(clock.observe(header: Self.header(received), sent: sent, received: received))
        #expect(clock.offset == 0)
    }

    @Test func ignoresWhatIsNotAnHTTPDate() {
        let clock = ClockOffset()
        for bad in [nil, "", "yesterday", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT"] {
            #expect(!clock.observe(header: bad, sent: Date(), received: Date()), "\(bad ?? "nil")")
        }
        #expect(clock.offset == 0)
    }

    /// AWS refuses a request signed ten minutes off (`RequestExpired`): the caller corrects its
    /// clock from the answer's `Date` and signs again at once, as the SDKs do.
    @Test func aRequestRefusedForClockSkewIsSignedAgainAtTheServersTime() async throws {
        let expired =
            #"<Response><Errors><Error><Code>RequestExpired</Code><Message>Request has expired.</Message></Error></Errors><RequestID>r1</RequestID></Response>"#
        let ahead = Self.header(Date().addingTimeInterval(600))
        let transport = ScriptedTransport(headed: [(400, ["date": ahead], expired), (200, [:], EC2ClientTests.zones)])
        var ec2 = EC2Client(
            region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:1/")!,
            credentials: StaticCredentials(AWSCredentials(accessKeyId: "testing", secretAccessKey: "testing")), transport: transport)
        let clock = ClockOffset()
        ec2.clock = clock
        #expect(try await ec2.describeAvailabilityZones().count == 1)
        let stamps = transport.requests.compactMap { $0.headers["x-amz-date"] }
        #expect(stamps.count == 2)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let times = stamps.compactMap { f.date(from: $0) }
        #expect(times.count == 2 && abs(times[1].timeIntervalSince(times[0]) - 600) <= 2, "\(stamps)")
        #expect(abs(clock.offset - 600) <= 1)

        // a refusal for skew that the answer's time does not explain is not retried
        let again = ScriptedTransport(headed: [(400, ["date": Self.header(Date())], expired), (200, [:], EC2ClientTests.zones)])
        var other = EC2Client(
            region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:1/")!,
            credentials: StaticCredentials(AWSCredentials(accessKeyId: "testing", secretAccessKey: "testing")), transport: again)
        other.clock = ClockOffset()
        await #expect(throws: AWSError.self) { try await other.describeAvailabilityZones() }
        #expect(again.requests.count == 1)
    }
}
