import Crypto
import Foundation

extension EC2Client {
    /// An S3 client for one bucket with this client's credentials. The bucket is addressed
    /// virtual-host style on AWS (`https://bucket.s3.region.amazonaws.com/`) and path style under
    /// an endpoint override (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`: moto, MinIO).
    public func s3(bucket: String, _ env: [String: String] = ProcessInfo.processInfo.environment) -> S3Client {
        let endpoint =
            AWSCaller.endpoint("S3", env).map { $0.appending(path: bucket) }
            ?? URL(string: "https://\(bucket).s3.\(region).amazonaws.com/")!
        return S3Client(aws: aws.sibling(service: "s3", region: region, endpoint: endpoint))
    }
}

/// The two S3 object calls the agent's state shipping needs. Object keys are used as given and
/// must be made of URL-safe characters (the agent's are `prefix/agent-id/sha256`).
public struct S3Client: Sendable {
    public var aws: AWSCaller

    /// Stores an object; the payload's SHA-256 is signed (`x-amz-content-sha256`), so S3 refuses
    /// a body that changed on the way.
    public func putObject(key: String, body: Data) async throws {
        let digest = SigV4Signer.hex(SHA256.hash(data: body))
        _ = try await aws.exchange(
            "PutObject", method: "PUT", path: key, contentType: "application/octet-stream", headers: [("x-amz-content-sha256", digest)], body: body)
    }

    /// An object's content; a missing one is `AWSError.refused` with code `NoSuchKey`.
    public func getObject(key: String) async throws -> Data {
        let empty = SigV4Signer.hex(SHA256.hash(data: Data()))
        return try await aws.exchange("GetObject", method: "GET", path: key, contentType: nil, headers: [("x-amz-content-sha256", empty)], body: Data())
    }
}
