-- Whether a client has read a notification is the console's to write, the notification the
-- notifier's: one read mark per notification, which counts while no occurrence came after it
-- (a repeat collapsed into the row makes it unread again without the notifier touching the
-- mark). notifications.is_read is no longer written or read; a later migration drops it once
-- no notifier of the previous release runs.
CREATE TABLE notification_reads (
    notification_id uuid PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    client_id uuid NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    read_at timestamptz NOT NULL
);

INSERT INTO notification_reads (notification_id, client_id, read_at)
SELECT id, client_id, last_occurred_at FROM notifications WHERE is_read AND client_id IS NOT NULL;
