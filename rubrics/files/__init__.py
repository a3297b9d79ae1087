"""Files that responses, tasks and references carry (deliverables: PDF, DOCX, XLSX, CSV,
PPTX; images: PNG, JPEG, WebP): what a file is, judged from its bytes and never its name
(`sniff`), and what a judge or a page can read of it, within documented limits (`convert`,
`images`). Every file is untrusted: SVG is refused, images are re-encoded, office files are
zips checked for bombs before they are opened, and every conversion stops at its limits and
says what it cut."""
