# Windows BITS (Start-BitsTransfer) against bitsmock — run on Windows, with bitsmock started
# on a machine the Windows host can reach. It cannot run on the project's Linux CI; it is
# documented here so a client developer can reproduce a run by hand.
#
#   bitsmock serve --listen 0.0.0.0:8080 --admin 127.0.0.1:9090 --profile lost-acks --seed 7
#
# (--admin stays on loopback unless --admin-token is given; steer it from the bitsmock host
#  or give a token.)

$Server = "http://bitsmock-host:8080"
$Source = "C:\temp\report.bin"

# Upload job: BITS sends Create-Session, Fragments and Close-Session to bitsmock.
$job = Start-BitsTransfer -TransferType Upload -Source $Source `
    -Destination "$Server/drop/report.bin" -Asynchronous -DisplayName "bitsmock test"
while ($job.JobState -in "Connecting", "Transferring", "TransientError") {
    Start-Sleep -Milliseconds 500
}
if ($job.JobState -eq "Transferred") {
    Complete-BitsTransfer -BitsJob $job
    "uploaded; the server's journal shows the faults injected on the way"
} else {
    "job ended in state $($job.JobState): $($job.ErrorDescription)"
    Remove-BitsTransfer -BitsJob $job
}

# What the server saw (run where the admin listener is reachable):
#   curl -s 'http://127.0.0.1:9090/journal?packet=fragment' | jq '.events[] | {index, range, sent}'
#   curl -s http://127.0.0.1:9090/uploads
# Upload-reply jobs use -TransferType UploadReply and a destination under /reply/.
