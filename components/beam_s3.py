"""Beam's S3 filesystem writing an empty file: its uploader completes a multipart upload with no
parts, which S3 and MinIO reject ("MalformedXML"), so any empty output of a Beam stage (an empty
quarantine list, an empty TFMA output) fails the stage. Here the upload gets one empty part.

Applied on import: by files.register for s3:// paths (this process) and as a Beam plugin
(`--beam_plugins=components.beam_s3`, every worker process: pipeline.config.beam_s3_args).
"""

from apache_beam.io.aws import s3io

if not getattr(s3io.S3Uploader.finish, "graft_empty_part", False):
    _finish = s3io.S3Uploader.finish

    def _finish_with_a_part(self):
        if not self.parts and not self.buffer:
            self._write_to_s3(b"")  # the one (last, so size-free) part of an empty object
        _finish(self)

    _finish_with_a_part.graft_empty_part = True
    s3io.S3Uploader.finish = _finish_with_a_part
